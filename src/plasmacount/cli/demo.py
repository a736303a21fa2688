"""Run the whole pipeline on built-in simulated data (a few minutes on two cores)."""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger("plasmacount")


EXAMPLES = """
plasmacount demo demo-output
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "output", nargs="?", default="demo-output", metavar="OUTDIR", help="output folder (default demo-output)"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")


def run(args: argparse.Namespace) -> None:
    from plasmacount.demo import run_demo

    result = run_demo(args.output, seed=args.seed, progress=logger.info)
    logger.info(
        "demo finished: %d BAMs counted (%s), a %d-sample reference, prenatal results in %s",
        len(result.counts),
        result.summary,
        len(result.cohort_counts),
        result.nipt_summary.parent,
    )
    for table in (result.summary, result.nipt_summary):
        with open(table) as stream:
            for line in stream:
                logger.info("  %s", line.rstrip("\n").replace("\t", "  "))
    reports = result.output / "reports"
    logger.info(
        "reports: open %s (prenatal batch), %s (cancer cohorts) in a browser",
        reports / "prenatal" / "batch.html",
        reports / "cancer" / "batch.html",
    )
