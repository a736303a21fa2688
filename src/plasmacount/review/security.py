"""Passwords, login sessions, CSRF tokens and login rate limits of the review app.

Passwords are hashed with argon2id at OWASP's stated configuration (19 MiB, 2 passes, one
lane: about 20 ms of one core; argon2-cffi's default, RFC 9106's 64 MiB x 3 passes x 4 lanes,
takes about 170 ms of CPU, which made 50 reviewers logging in at once wait 4 s on a 2-core
server). A stored hash of other parameters still verifies and is re-hashed at the next login.
A login makes a random session token: the browser holds it in an HttpOnly, SameSite=Strict
cookie, the database only its SHA-256, so a leaked database does not leak live sessions. Each session has its own CSRF token, which every form carries in a
hidden field and every API write in the `X-CSRF-Token` header. Failed logins are counted per
user name and per client address over a window; past a limit, logins are refused for a while.
The count and the attempt's own record are one locked step (`database.begin_write`). For its
name, an attempt counts as failed until its password is found right: 40 simultaneous logins
for one name check at most FAILED_LOGIN_LIMIT passwords, not one per request. For its address,
only settled failures count (and attempts still unsettled after PENDING_TIMEOUT, whose check
never finished), against a higher limit: a lab's reviewers behind one address (a proxy, a NAT)
can all log in at once, while guesses spread over many names from one address stop after
ADDRESS_FAILED_LOGIN_LIMIT plus the guesses in flight (at most the server's worker threads).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from plasmacount.review.database import LoginAttempt, LoginSession, User, begin_write, now

SESSION_HOURS = 12
FAILED_LOGIN_LIMIT = 5  # per user name
ADDRESS_FAILED_LOGIN_LIMIT = 20  # per client address, over all names
FAILED_LOGIN_WINDOW = dt.timedelta(minutes=15)
PENDING_TIMEOUT = dt.timedelta(minutes=1)
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# A hash to verify against when the user does not exist, so both cases take the same time.
_DUMMY_HASH = _hasher.hash("not a password of anyone")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TooManyFailures(Exception):
    """Refused without checking the password: too many failed logins for this name or address."""


def authenticate(session: Session, username: str, password: str, client: str) -> User | None:
    """The active user with this password, or None; raises TooManyFailures past the limit.

    The attempt is recorded as failed before the password is checked, in the same locked step as
    the count, and marked succeeded only when the password is right."""
    username, client = username[:64], client[:64]
    begin_write(session, f"login-name:{username}", f"login-client:{client}")
    moment = now()
    since = moment - FAILED_LOGIN_WINDOW
    name_failures = session.scalar(
        select(func.count())
        .select_from(LoginAttempt)
        .where(LoginAttempt.at >= since, LoginAttempt.username == username, LoginAttempt.succeeded.is_not(True))
    )
    address_failures = session.scalar(
        select(func.count())
        .select_from(LoginAttempt)
        .where(
            LoginAttempt.at >= since,
            LoginAttempt.client == client,
            LoginAttempt.succeeded.is_(False)
            | (LoginAttempt.succeeded.is_(None) & (LoginAttempt.at < moment - PENDING_TIMEOUT)),
        )
    )
    if (name_failures or 0) >= FAILED_LOGIN_LIMIT or (address_failures or 0) >= ADDRESS_FAILED_LOGIN_LIMIT:
        session.rollback()
        raise TooManyFailures(username)
    attempt = LoginAttempt(username=username, client=client, at=moment, succeeded=None)
    session.add(attempt)
    session.commit()
    user = session.scalar(select(User).where(User.username == username))
    try:
        ok = _hasher.verify(user.password_hash if user else _DUMMY_HASH, password) and user is not None and user.active
    except (VerificationError, InvalidHashError):
        ok = False
    attempt.succeeded = bool(ok)
    if ok and user is not None and _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    session.commit()
    return user if ok else None


def open_session(session: Session, user: User) -> tuple[str, LoginSession]:
    """A new login session; returns the token for the cookie (only its digest is stored)."""
    token = secrets.token_urlsafe(32)
    record = LoginSession(
        token_hash=_digest(token),
        csrf_token=secrets.token_urlsafe(32),
        user_id=user.id,
        created_at=now(),
        expires_at=now() + dt.timedelta(hours=SESSION_HOURS),
    )
    session.add(record)
    session.commit()
    return token, record


def find_session(session: Session, token: str | None) -> LoginSession | None:
    if not token:
        return None
    record = session.scalar(select(LoginSession).where(LoginSession.token_hash == _digest(token)))
    if record is None or record.expires_at < now() or not record.user.active:
        return None
    return record


def close_session(session: Session, token: str | None) -> None:
    record = find_session(session, token)
    if record is not None:
        record.expires_at = now()
        session.commit()


def csrf_matches(record: LoginSession, supplied: str | None) -> bool:
    if not supplied:
        return False
    return hmac.compare_digest(record.csrf_token, supplied)
