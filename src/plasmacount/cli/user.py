"""Review-app accounts from the command line: the first admin, or any user."""
from __future__ import annotations

import argparse
import getpass
import logging
import os

from plasmacount.cli.serve import DEFAULT_DATABASE
from plasmacount.errors import UsageError

logger = logging.getLogger("plasmacount")


EXAMPLES = """
plasmacount user add alice --role admin --database review.sqlite
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("add",), help="add: create a user")
    parser.add_argument("username")
    parser.add_argument("--role", choices=("viewer", "reviewer", "admin"), default="viewer", help="default viewer")
    parser.add_argument("--password-env", metavar="VAR", help="read the password from this environment variable (default: ask)")
    parser.add_argument("--database", default=os.environ.get("PLASMACOUNT_DATABASE", DEFAULT_DATABASE), metavar="URL_OR_FILE",
                        help=f"SQLite file or database URL (default {DEFAULT_DATABASE}, or $PLASMACOUNT_DATABASE)")


def run(args: argparse.Namespace) -> None:
    from plasmacount.review.database import database_url, session_factory, upgrade
    from plasmacount.review.records import create_user

    if args.password_env:
        password = os.environ.get(args.password_env)
        if password is None:
            raise UsageError(f"${args.password_env} is not set")
    else:
        password = getpass.getpass(f"password for {args.username}: ")
        if password != getpass.getpass("again: "):
            raise UsageError("the two passwords differ")
    url = database_url(args.database)
    upgrade(url)
    with session_factory(url)() as session:
        create_user(session, args.username, password, args.role, created_by="command line")
    logger.info("user %s (%s) created", args.username, args.role)
