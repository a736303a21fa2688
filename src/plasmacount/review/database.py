"""The review app's tables (SQLAlchemy) and their schema migrations (Alembic).

SQLite by default (one file, no set-up), PostgreSQL by URL. The schema is created and upgraded
only through the Alembic migrations in `migrations/`, so a database made by an older version is
brought forward in place. The audit table is append-only: the migration installs triggers that
refuse UPDATE and DELETE on it, so not even a mistaken query can rewrite history.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

MIGRATIONS = Path(__file__).with_name("migrations")
STATUSES = ("Normal", "Suspected", "Probable", "Verified", "False positive", "False negative", "Failed")
ROLES = ("viewer", "reviewer", "admin")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=now)


class LoginSession(Base):
    __tablename__ = "login_sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    csrf_token: Mapped[str] = mapped_column(String(64), nullable=False)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=now)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)
    user: Mapped[User] = relationship()


class LoginAttempt(Base):
    __tablename__ = "login_attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    client: Mapped[str] = mapped_column(String(64), nullable=False)
    at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=now, index=True)
    # None while the password is being checked (security.authenticate), then True or False.
    succeeded: Mapped[bool | None] = mapped_column(Boolean, nullable=True)


class Batch(Base):
    __tablename__ = "batches"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    imported_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=now)
    imported_by: Mapped[str] = mapped_column(String(64), nullable=False)
    overview_html: Mapped[str | None] = mapped_column(Text)
    samples: Mapped[list[Sample]] = relationship(back_populates="batch", order_by="Sample.name")


class ReportFile(Base):
    """A data file behind a report's plot (`case_03_data/z_scores.tsv`), kept so its link works in the app."""

    __tablename__ = "report_files"
    __table_args__ = (UniqueConstraint("batch_id", "path"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"), nullable=False)
    path: Mapped[str] = mapped_column(String(300), nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False)


class Sample(Base):
    __tablename__ = "samples"
    __table_args__ = (UniqueConstraint("batch_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False, index=True)
    results: Mapped[dict] = mapped_column(JSON, nullable=False)  # analysis -> its result JSON
    report_html: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    signed_off_by: Mapped[str | None] = mapped_column(String(64))
    signed_off_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    batch: Mapped[Batch] = relationship(back_populates="samples")
    findings: Mapped[list[Finding]] = relationship(back_populates="sample", order_by="Finding.position")
    comments: Mapped[list[Comment]] = relationship(back_populates="sample", order_by="Comment.id")

    @property
    def locked(self) -> bool:
        return self.signed_off_at is not None


class Finding(Base):
    __tablename__ = "findings"
    __table_args__ = (UniqueConstraint("sample_id", "key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id"), nullable=False)
    key: Mapped[str] = mapped_column(String(120), nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    label: Mapped[str] = mapped_column(String(200), nullable=False)
    automatic: Mapped[str] = mapped_column(String(200), nullable=False)  # what the analysis said
    detail: Mapped[str] = mapped_column(Text, nullable=False, default="")
    status: Mapped[str] = mapped_column(String(32), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    updated_by: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    sample: Mapped[Sample] = relationship(back_populates="findings")


class Comment(Base):
    __tablename__ = "comments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id"), nullable=False)
    finding_id: Mapped[int | None] = mapped_column(ForeignKey("findings.id"))
    author: Mapped[str] = mapped_column(String(64), nullable=False)
    at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=now)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    sample: Mapped[Sample] = relationship(back_populates="comments")


class AuditEntry(Base):
    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=now, index=True)
    username: Mapped[str] = mapped_column(String(64), nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    batch_id: Mapped[int | None] = mapped_column(Integer, index=True)
    sample_id: Mapped[int | None] = mapped_column(Integer, index=True)
    target: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict | None] = mapped_column(JSON)


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout and foreign keys (off by default there)."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, pool_size=20, max_overflow=40
        )

        @event.listens_for(engine, "connect")
        def _sqlite_settings(connection, _record):
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_size=20, max_overflow=40, pool_pre_ping=True)


def begin_write(session: Session, *lock_keys: str) -> None:
    """Start a transaction in which a read-then-write cannot interleave with another one, in this
    process or another: SQLite takes its write lock at BEGIN (BEGIN IMMEDIATE); PostgreSQL takes a
    transaction-level advisory lock per key (callers also lock rows with SELECT ... FOR UPDATE).
    Whatever the session had read so far is committed first (nothing is pending at this point)."""
    if session.in_transaction():
        session.commit()
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        # The driver begins a transaction only before its first write; beginning it here, with
        # the write lock, makes the reads that decide the write part of it. (Plain reads stay
        # outside transactions, so they always see the latest commits.)
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")
    elif dialect == "postgresql":
        for key in sorted(set(lock_keys)):  # one order everywhere: no deadlock between two keys
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_number(key)})


def _lock_number(key: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


def upgrade(url: str) -> None:
    """Create or bring the schema up to date through the Alembic migrations."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

    from plasmacount.errors import DataError, UsageError

    shown = url.split("@")[-1]  # never a password in a message
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        if path.is_dir():
            raise UsageError(f"{path}: is a folder; give --database a file name (e.g. review.sqlite)")
        if not path.parent.is_dir():
            raise UsageError(f"{path.parent}: no such folder for the database; create it first")
        if path.exists() and path.stat().st_size and path.read_bytes()[:16] != b"SQLite format 3\x00":
            raise DataError(f"{path}: not an SQLite database; give --database a new file or a database URL")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    try:
        command.upgrade(config, "head")
    except (ArgumentError, NoSuchModuleError) as error:
        raise UsageError(
            f"--database {shown}: not a usable database URL ({error}); e.g. review.sqlite or postgresql+psycopg://user:pw@host/db"
        ) from None
    except DBAPIError as error:
        reason = str(error.orig).strip().splitlines()[0] if error.orig is not None else str(error).splitlines()[0]
        raise DataError(
            f"database {shown}: {reason}; check the path or server, its permissions, and that it is a plasmacount review database"
        ) from None


def session_factory(url: str) -> sessionmaker:
    return sessionmaker(bind=make_engine(url), expire_on_commit=False)


def database_url(value: str) -> str:
    """A URL from a URL or a plain file path (taken as SQLite)."""
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).resolve()}"
