"""Load a batch's result folder into the review app's database (the same batch twice is not duplicated)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from plasmacount.cli.serve import DEFAULT_DATABASE, require_review_app
from plasmacount.errors import UsageError

logger = logging.getLogger("plasmacount")


EXAMPLES = """
plasmacount import nipt-results --name run-2026-12-01 --database review.sqlite
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "folders",
        nargs="+",
        metavar="OUTDIR",
        help="result folders of one batch: nipt/tumor/viral/fragments JSON, and its `report` folder if made",
    )
    parser.add_argument("--name", help="batch name (default: the folder's name)")
    parser.add_argument(
        "--database",
        default=os.environ.get("PLASMACOUNT_DATABASE", DEFAULT_DATABASE),
        metavar="URL_OR_FILE",
        help=f"SQLite file or database URL (default {DEFAULT_DATABASE}, or $PLASMACOUNT_DATABASE)",
    )
    parser.add_argument(
        "--user", default=os.environ.get("USER", "import"), help="name recorded in the audit trail (default $USER)"
    )


def run(args: argparse.Namespace) -> None:
    require_review_app()
    from plasmacount.report import collect
    from plasmacount.review.database import database_url, session_factory, upgrade
    from plasmacount.review.records import import_batch

    for folder in map(Path, args.folders):
        if not folder.is_dir():
            raise UsageError(f"{folder}: not a folder of plasmacount results")
    collect(args.folders)  # unreadable results stop here, before a database is created or changed
    url = database_url(args.database)
    upgrade(url)
    with session_factory(url)() as session:
        result = import_batch(session, args.folders, args.user, args.name)
        count = len(result.batch.samples)
        if result.created:
            logger.info("imported batch %s: %d samples", result.batch.name, count)
        else:
            logger.info("batch %s (%d samples) holds these results already; nothing imported", result.batch.name, count)
