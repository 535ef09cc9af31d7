"""thinking tokens: of a job's completion tokens, those generated inside reasoning models'
thoughts (job_cost.thinking_tokens)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE (as in 0005): SQLite cannot rebuild tables under the views.
    op.add_column("job_cost", sa.Column("thinking_tokens", sa.Integer(), nullable=False,
                                        server_default="0"))


def downgrade() -> None:
    op.drop_column("job_cost", "thinking_tokens")
