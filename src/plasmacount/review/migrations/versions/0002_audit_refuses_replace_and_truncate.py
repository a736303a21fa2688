"""The audit trail refuses REPLACE (SQLite) and TRUNCATE (PostgreSQL).

0001's triggers refused UPDATE and DELETE, but SQLite's INSERT OR REPLACE deletes the old row
without firing DELETE triggers (recursive triggers are off), and PostgreSQL's TRUNCATE fires no
row triggers: both let the app's own connection rewrite or empty the history.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute(
            "CREATE TRIGGER audit_no_replace BEFORE INSERT ON audit WHEN EXISTS (SELECT 1 FROM audit WHERE id = NEW.id) "
            "BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END"
        )
    elif dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_refuse_truncate() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'the audit trail is append-only'; END; $$ LANGUAGE plpgsql"
        )
        op.execute(
            "CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_truncate()"
        )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_no_replace")
    elif dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_no_truncate ON audit")
        op.execute("DROP FUNCTION IF EXISTS audit_refuse_truncate()")
