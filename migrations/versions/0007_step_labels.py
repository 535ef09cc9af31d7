"""step labels: step_label rows of label jobs (ttcq label), the stored job a label job
labels (job.source_job_id), and mcts visit counts and Q-values on trace nodes

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "step_label",
        sa.Column("candidate", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.Column("method", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("rollouts", sa.Integer(), nullable=False),
        sa.Column("successes", sa.Integer(), nullable=False),
        sa.Column("hard", sa.Boolean(), nullable=False),
        sa.Column("soft", sa.Float(), nullable=True),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["job.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "candidate", "step"),
    )
    op.add_column("job", sa.Column("source_job_id", sa.Uuid(), nullable=True))
    op.create_index(op.f("ix_job_source_job_id"), "job", ["source_job_id"])
    # SQLite adds a foreign key only by copying the table, which its views forbid; the
    # embedded database keeps the link without the constraint.
    if op.get_bind().dialect.name != "sqlite":
        op.create_foreign_key("job_source_job_id_fkey", "job", "job", ["source_job_id"], ["id"])
    op.add_column("trace_node", sa.Column("visits", sa.Integer(), nullable=True))
    op.add_column("trace_node", sa.Column("q_value", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("trace_node", "q_value")
    op.drop_column("trace_node", "visits")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint("job_source_job_id_fkey", "job", type_="foreignkey")
    op.drop_index(op.f("ix_job_source_job_id"), table_name="job")
    op.drop_column("job", "source_job_id")
    op.drop_table("step_label")
