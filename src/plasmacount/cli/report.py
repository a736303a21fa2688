"""Reports: a self-contained HTML page and a PDF per sample, a batch overview, MultiQC files."""
from __future__ import annotations

import argparse
import logging

logger = logging.getLogger("plasmacount")


EXAMPLES = """
plasmacount report nipt-results tumor-results -o reports
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="+", metavar="RESULTS",
                        help="result folders or files of `nipt`, `tumor`, `viral` and `fragments` (<sample>.<analysis>.json)")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                        help="folder for <sample>.html, <sample>.pdf, batch.html, the data behind each plot and *_mqc files")
    parser.add_argument("--no-pdf", action="store_true", help="skip the PDF copies (faster)")


def run(args: argparse.Namespace) -> None:
    from plasmacount.progress import Progress
    from plasmacount.report import write_reports

    written = write_reports(args.results, args.output, pdf=not args.no_pdf, progress=Progress("writing reports", enabled=not args.quiet))
    pages = sum(path.suffix == ".html" for path in written) - 1
    logger.info("%d sample reports and a batch overview (batch.html) in %s", pages, args.output)
