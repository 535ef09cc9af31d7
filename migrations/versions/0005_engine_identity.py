"""job_cost.engine_model and job_cost.seeded: which engine ran a job, and whether its
seeds were honoured (served engines may sample unseeded)

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | None = "0003"  # after the rescores (0003), in number order
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # never: SQLite adds and drops these columns in place; copying the table would break
    # the views that read it (v_job_outcome).
    with op.batch_alter_table("job_cost", recreate="never") as table:
        table.add_column(sa.Column("engine_model", sqlmodel.sql.sqltypes.AutoString(length=512),
                                   nullable=False, server_default=""))
        table.add_column(sa.Column("seeded", sa.Boolean(), nullable=False,
                                   server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("job_cost", recreate="never") as table:
        table.drop_column("seeded")
        table.drop_column("engine_model")
