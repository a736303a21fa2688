"""The review web app: batches, samples, statuses, sign-off, accounts and an audit trail."""

from __future__ import annotations

import argparse
import logging
import os

from plasmacount.cli import number
from plasmacount.errors import UsageError

logger = logging.getLogger("plasmacount")
DEFAULT_DATABASE = "plasmacount-review.sqlite"


EXAMPLES = """
plasmacount serve --database review.sqlite --port 8000
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database",
        default=os.environ.get("PLASMACOUNT_DATABASE", DEFAULT_DATABASE),
        metavar="URL_OR_FILE",
        help=f"SQLite file or database URL, e.g. postgresql+psycopg://user:pw@host/db (default {DEFAULT_DATABASE}, "
        "or $PLASMACOUNT_DATABASE)",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; put TLS in front for others)"
    )
    parser.add_argument("--port", type=number(int, 1, 65535), default=8000, help="port (default 8000)")
    parser.add_argument("--secure-cookies", action="store_true", help="mark the session cookie Secure (behind HTTPS)")
    parser.add_argument(
        "--four-eyes",
        action="store_true",
        help="the four-eyes rule: a sample can be signed off only when someone other than the signer has "
        "reviewed it (set or confirmed a status, or commented)",
    )
    parser.add_argument(
        "--forwarded-allow-ips",
        metavar="ADDRESSES",
        help="trust X-Forwarded-For/-Proto only from these proxy addresses (comma-separated); by default no "
        "header is trusted and the login rate limit keys on the connecting address",
    )


def require_review_app() -> None:
    """Stop with one line when the review extra (web server and database) is not installed."""
    # The web stack is an extra so that an analysis install stays lean; the commands that need it
    # say how to get it instead of failing on an import deep inside.
    try:
        import alembic  # noqa: F401
        import fastapi  # noqa: F401
        import sqlalchemy  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        raise UsageError(
            f"the review app needs the 'review' extra ({error.name} is missing): pip install 'plasmacount[review]'"
        ) from None


def run(args: argparse.Namespace) -> None:
    require_review_app()
    import uvicorn

    from plasmacount.review.app import create_app
    from plasmacount.review.database import database_url, upgrade

    url = database_url(args.database)
    upgrade(url)
    logger.info(
        "plasmacount review on http://%s:%d (database %s); create the first admin with `plasmacount user add NAME --role admin`",
        args.host,
        args.port,
        url.split("@")[-1],
    )
    # uvicorn trusts X-Forwarded-For from 127.0.0.1 by default: any local process could then pick
    # the address the rate limit counts. Only an explicit proxy list turns the headers on.
    uvicorn.run(
        create_app(url, secure_cookies=args.secure_cookies, four_eyes=args.four_eyes),
        host=args.host,
        port=args.port,
        log_level="warning",
        proxy_headers=bool(args.forwarded_allow_ips),
        forwarded_allow_ips=args.forwarded_allow_ips or "",
    )
