"""preemption: strikes and stalls on a job (what counts against its attempts), its
attempt history (job_attempt), search checkpoints (job_checkpoint), work lost to
interruptions in job_cost, and worker states for /metrics (worker_state)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TEXT = sqlmodel.sql.sqltypes.AutoString


def _count(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.Integer(), nullable=False, server_default="0")


def upgrade() -> None:
    op.create_table(
        "worker_state",
        sa.Column("name", TEXT(length=256), nullable=False),
        sa.Column("state", TEXT(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outages", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "job_attempt",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker", TEXT(length=256), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", TEXT(length=16), nullable=False),
        sa.Column("charge", TEXT(length=8), nullable=False),
        sa.Column("progress", sa.Boolean(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["job.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "attempt"),
    )
    op.create_table(
        "job_checkpoint",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("next_key", TEXT(length=32), nullable=False),
        sa.Column("elapsed", sa.Float(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["job.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "seq"),
    )
    # Plain ALTER TABLE (as in 0005): SQLite cannot rebuild tables under the views.
    op.add_column("job", _count("strikes"))
    op.add_column("job", _count("stalls"))
    op.add_column("job", sa.Column("alone", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    op.add_column("job", sa.Column("failure", TEXT(length=32), nullable=True))
    op.add_column("job_cost", _count("wasted_tokens"))
    op.add_column("job_cost", _count("wasted_cached_tokens"))
    op.add_column("job_cost", _count("resumed_calls"))


def downgrade() -> None:
    for column in ("resumed_calls", "wasted_cached_tokens", "wasted_tokens"):
        op.drop_column("job_cost", column)
    for column in ("failure", "alone", "stalls", "strikes"):
        op.drop_column("job", column)
    op.drop_table("job_checkpoint")
    op.drop_table("job_attempt")
    op.drop_table("worker_state")
