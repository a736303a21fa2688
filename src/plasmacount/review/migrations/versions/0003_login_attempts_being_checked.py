"""A login attempt's outcome may be unknown while its password is being checked.

`login_attempts.succeeded` becomes nullable: NULL while the password is checked, then true or
false. The per-name limit counts unknown outcomes as failures (so simultaneous guesses at one
account are cut at the limit), the per-address limit counts only settled failures (so fifty
people behind one address can log in at once).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("login_attempts") as table:
        table.alter_column("succeeded", existing_type=sa.Boolean, nullable=True)


def downgrade() -> None:
    op.execute("UPDATE login_attempts SET succeeded = false WHERE succeeded IS NULL")
    with op.batch_alter_table("login_attempts") as table:
        table.alter_column("succeeded", existing_type=sa.Boolean, nullable=False)
