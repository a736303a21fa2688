"""Reports: a self-contained HTML page and a PDF per sample, a batch overview, MultiQC files."""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger("plasmacount")


EXAMPLES = """
plasmacount report nipt-results tumor-results -o reports
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "results",
        nargs="+",
        metavar="RESULTS",
        help="result folders or files of `nipt`, `tumor`, `viral` and `fragments` (<sample>.<analysis>.json)",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUTDIR",
        help="folder for <sample>.html, <sample>.pdf, batch.html, the data behind each plot and *_mqc files",
    )
    parser.add_argument("--no-pdf", action="store_true", help="skip the PDF copies (faster)")
    parser.add_argument("--lab", metavar="NAME", help="the laboratory's name for the report header")
    parser.add_argument(
        "--sample-info",
        metavar="TSV",
        help="what the lab knows about each sample, for the report header: a tab-separated table with a "
        "'sample' column and any others (patient ID, collection date, gestational age, referrer)",
    )
    parser.add_argument(
        "--report-date",
        metavar="YYYY-MM-DD",
        type=_date,
        help="the date printed as the report date (default: the date the newest result file was written, "
        "so that the same results give the same report)",
    )


def _date(text: str) -> str:
    import datetime

    try:
        return datetime.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date; give it as YYYY-MM-DD") from None


def run(args: argparse.Namespace) -> None:
    from plasmacount.progress import Progress
    from plasmacount.report import ReportSettings, read_sample_info, write_reports

    settings = ReportSettings(
        lab=args.lab,
        report_date=args.report_date,
        sample_info=read_sample_info(args.sample_info) if args.sample_info else {},
    )
    written = write_reports(
        args.results,
        args.output,
        pdf=not args.no_pdf,
        settings=settings,
        progress=Progress("writing reports", enabled=not args.quiet),
    )
    pages = sum(path.suffix == ".html" for path in written) - 1
    logger.info("%d sample reports and a batch overview (batch.html) in %s", pages, args.output)
