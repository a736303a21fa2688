"""Build a panel of normals from euploid pregnancies' counts (20 or more; 100+ advised)."""

from __future__ import annotations

import argparse
import logging

from plasmacount.cli import number

logger = logging.getLogger("plasmacount")


EXAMPLES = """
plasmacount reference panel/*.counts.npz --bins hg38.100kb.bins.npz -o panel.reference.npz
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "counts",
        nargs="+",
        metavar="COUNTS",
        help="counts files (or WIG/TSV counts) of euploid pregnancies, both fetal sexes",
    )
    parser.add_argument("-o", "--output", required=True, metavar="REF", help="reference file to write (.npz)")
    parser.add_argument(
        "--bins", required=True, metavar="ANNOTATION", help="bin annotation (GC, mappability) from `plasmacount bins`"
    )
    parser.add_argument(
        "--components", type=number(int, 0, 50), default=8, metavar="K", help="principal components removed (default 8)"
    )


def run(args: argparse.Namespace) -> None:
    from plasmacount.bins import BinAnnotation
    from plasmacount.counts import load_counts
    from plasmacount.progress import Progress
    from plasmacount.reference import build_reference

    annotation = BinAnnotation.load(args.bins)
    samples = [load_counts(path) for path in args.counts]
    reference = build_reference(
        samples,
        annotation,
        n_components=args.components,
        progress=Progress("building reference", enabled=not args.quiet),
    )
    reference.save(args.output)
    qc = reference.metadata["qc"]
    logger.info(
        "reference of %d samples (%d female, %d male fetuses), %s bins used, written to %s",
        len(samples),
        qc["female_samples"],
        qc["male_samples"],
        f"{reference.metadata['bins_used']:,}",
        args.output,
    )
    for key in ("13", "18", "21"):
        logger.info(
            "chr%s: CV %.3f %% (counting limit %.3f %%)",
            key,
            100 * reference.chromosome_null(key)["cv"],
            100 * reference.chromosome_null(key)["poisson_cv"],
        )
    logger.info("reference QC: %s%s", qc["status"], "" if not qc["reasons"] else " (" + "; ".join(qc["reasons"]) + ")")
