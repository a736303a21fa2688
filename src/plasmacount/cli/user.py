"""Review-app accounts from the command line: add, disable or enable, reset a password, log out everywhere."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys

from plasmacount.cli.serve import DEFAULT_DATABASE, require_review_app
from plasmacount.errors import UsageError

logger = logging.getLogger("plasmacount")


EXAMPLES = """
plasmacount user add alice --role admin --database review.sqlite
plasmacount user disable bob --database review.sqlite      # also ends all of bob's sessions
plasmacount user password bob --database review.sqlite     # asks for the new password; ends bob's sessions
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=("add", "disable", "enable", "password", "logout"),
        help="add: create a user; disable/enable an account (the last active admin stays); password: set a new one; "
        "logout: end every session of the user",
    )
    parser.add_argument("username")
    parser.add_argument("--role", choices=("viewer", "reviewer", "admin"), default="viewer", help="default viewer")
    parser.add_argument(
        "--password-env", metavar="VAR", help="read the password from this environment variable (default: ask)"
    )
    parser.add_argument(
        "--database",
        default=os.environ.get("PLASMACOUNT_DATABASE", DEFAULT_DATABASE),
        metavar="URL_OR_FILE",
        help=f"SQLite file or database URL (default {DEFAULT_DATABASE}, or $PLASMACOUNT_DATABASE)",
    )


def _password(args: argparse.Namespace) -> str:
    if args.password_env:
        password = os.environ.get(args.password_env)
        if password is None:
            raise UsageError(f"${args.password_env} is not set")
        return password
    if not sys.stdin.isatty():
        raise UsageError("no terminal to ask for the password: pass --password-env VAR with the password in $VAR")
    password = getpass.getpass(f"password for {args.username}: ")
    if password != getpass.getpass("again: "):
        raise UsageError("the two passwords differ")
    return password


def run(args: argparse.Namespace) -> None:
    require_review_app()
    from sqlalchemy import select

    from plasmacount.review import records
    from plasmacount.review.database import User, database_url, session_factory, upgrade

    password = _password(args) if args.action in ("add", "password") else None
    url = database_url(args.database)
    upgrade(url)
    with session_factory(url)() as session:
        if args.action == "add":
            assert password is not None  # asked for above
            records.create_user(session, args.username, password, args.role, created_by="command line")
            logger.info("user %s (%s) created", args.username, args.role)
            return
        user = session.scalar(select(User).where(User.username == args.username))
        if user is None:
            raise UsageError(f"no user {args.username!r}; list them on the app's Users page")
        if args.action in ("disable", "enable"):
            records.set_active(session, None, user.id, args.action == "enable")
            logger.info("user %s %sd", args.username, args.action)
        elif args.action == "password":
            assert password is not None
            records.set_password(session, None, user.id, password)
            logger.info("password of %s changed; every session of theirs ended", args.username)
        else:
            ended = records.end_sessions(session, None, user.id)
            logger.info("%d session(s) of %s ended", ended, args.username)
