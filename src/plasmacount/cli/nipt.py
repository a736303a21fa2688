"""Prenatal test of a batch: fetal sex and fraction, trisomies, sex-chromosome aneuploidies, CNVs."""

from __future__ import annotations

import argparse
import logging

from plasmacount.cli import number
from plasmacount.quality import FAIL
from plasmacount.results import POSITIVE, NiptResult

logger = logging.getLogger("plasmacount")


EXAMPLES = """
plasmacount nipt batch/*.counts.npz --reference panel.reference.npz -o nipt-results
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "counts", nargs="+", metavar="COUNTS", help="counts files (or WIG/TSV counts) of the samples to test"
    )
    parser.add_argument(
        "--reference", required=True, metavar="REF", help="panel of normals from `plasmacount reference`"
    )
    parser.add_argument(
        "--bins",
        metavar="ANNOTATION",
        help="optional: the bin annotation the reference was made with, only checked "
        "against it (the reference keeps its bins' GC and mappability)",
    )
    parser.add_argument(
        "-o", "--output", required=True, metavar="OUTDIR", help="folder for <sample>.nipt.json, nipt.tsv, CNV BED/VCF"
    )
    parser.add_argument(
        "--cnv-z",
        type=number(float, 1.0),
        default=5.0,
        metavar="Z",
        help="segment |z| needed to call a CNV (default 5)",
    )
    parser.add_argument(
        "--threads",
        type=number(int, 1, 256),
        default=2,
        metavar="N",
        help="samples analysed at once, one process each (default 2)",
    )


def run(args: argparse.Namespace) -> None:
    from plasmacount.nipt import NiptOptions, run_batch
    from plasmacount.progress import Progress
    from plasmacount.reference import Reference

    reference = Reference.load(args.reference)
    if args.bins:
        from plasmacount.bins import BinAnnotation

        reference.check_annotation(BinAnnotation.load(args.bins), args.bins)
    if reference.qc_status == FAIL:
        logger.warning(
            "the reference failed its QC (%s); results may be unreliable",
            "; ".join(reference.qc_reasons),
        )
    results = run_batch(
        args.counts,
        reference,
        args.output,
        NiptOptions(cnv_z=args.cnv_z),
        progress=Progress("testing samples", enabled=not args.quiet),
        workers=args.threads,
    )
    read = [NiptResult(r) for r in results]
    positives = sum(bool(r.calls_with(POSITIVE)) for r in read)
    failed = sum(r.failed for r in read)
    logger.info(
        "%d samples tested: %d with a positive call, %d failed QC; results in %s",
        len(results),
        positives,
        failed,
        args.output,
    )
