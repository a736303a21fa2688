"""The data files behind a report's plots, kept with the batch.

A report page links each plot to its data (`<sample>_data/<plot>.tsv`, `batch_data/*.tsv`); the
app serves them from `report_files` so that those links work inside the app.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "report_files",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("batch_id", sa.Integer, sa.ForeignKey("batches.id"), nullable=False),
        sa.Column("path", sa.String(300), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.UniqueConstraint("batch_id", "path"),
    )


def downgrade() -> None:
    op.drop_table("report_files")
