"""candidate confidence: a sample's token confidence (its lowest group confidence), where it
was drawn with top-k logprobs (compute_optimal's confidence probe; sampling batches with
confidence_top_k, read by `ttcq policy fit`)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE (as in 0005): SQLite cannot rebuild tables under the views.
    op.add_column("candidate", sa.Column("confidence", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("candidate", "confidence")
