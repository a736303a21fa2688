"""Tumour fraction, ploidy and copy-number segments (ichorCNA-style HMM), arm z-scores, CNA score."""

from __future__ import annotations

import argparse
import logging

from plasmacount.cli import number

logger = logging.getLogger("plasmacount")


EXAMPLES = """
plasmacount tumor healthy/*.counts.npz --make-panel --bins hg38.100kb.bins.npz -o tumor-panel.npz
plasmacount tumor patients/*.counts.npz --panel tumor-panel.npz --bins hg38.100kb.bins.npz -o tumor-results
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "counts", nargs="+", metavar="COUNTS", help="counts files or WIG/TSV counts (e.g. HMMcopy readCounter WIGs)"
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="folder for <sample>.tumor.json, tumor.seg, tumor.bed, tumor.tsv; with --make-panel, the panel file",
    )
    parser.add_argument(
        "--bins", metavar="ANNOTATION", help="bin annotation with GC and mappability (strongly advised)"
    )
    parser.add_argument("--panel", metavar="PON", help="panel of normals: from --make-panel, or ichorCNA's PoN TSV")
    parser.add_argument(
        "--make-panel", action="store_true", help="build a panel of normals from the (healthy) COUNTS into OUT"
    )
    parser.add_argument(
        "--size-select",
        action="store_true",
        help="use only short fragments (the per-bin short counts, `count --short-range`, e.g. 90-150), which enriches tumour DNA",
    )
    parser.add_argument(
        "--min-mappability",
        type=number(float, 0.0, 1.0),
        default=0.9,
        metavar="M",
        help="skip bins with mappability below M (default 0.9)",
    )


def run(args: argparse.Namespace) -> None:
    from plasmacount.bins import BinAnnotation
    from plasmacount.errors import UsageError
    from plasmacount.progress import Progress
    from plasmacount.results import TumorResult
    from plasmacount.tumor import TumorOptions, make_panel, run_batch

    annotation = BinAnnotation.load(args.bins) if args.bins else None
    if annotation is None:
        logger.warning("no --bins annotation: no GC or mappability correction")
    if args.make_panel:
        if args.panel:
            raise UsageError("--make-panel builds a panel; it cannot also take --panel")
        panel = make_panel(args.counts, annotation, args.output)
        logger.info("panel of normals from %d samples written to %s", len(panel.samples), args.output)
        return
    results = run_batch(
        args.counts,
        annotation,
        args.panel,
        args.output,
        TumorOptions(size_select=args.size_select, min_mappability=args.min_mappability),
        progress=Progress("tumour fraction", enabled=not args.quiet),
    )
    for result in map(TumorResult, results):
        low, high = result.interval
        logger.info(
            "%s: tumour fraction %.1f %% (%.1f-%.1f %%), ploidy %.2f, CNA score %d",
            result.sample,
            100 * result.tumor_fraction,
            100 * low,
            100 * high,
            result.ploidy,
            result.cna_score,
        )
