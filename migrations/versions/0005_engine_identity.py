"""job_cost.engine_model and job_cost.seeded: which engine ran a job, and whether its
seeds were honoured (served engines may sample unseeded)

Revision ID: 0005
Revises: 0002
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE, not a batch copy: SQLite would refuse to rebuild job_cost under the
# analytics views that read it (ADD and DROP COLUMN are native since SQLite 3.35).
def upgrade() -> None:
    op.add_column("job_cost", sa.Column("engine_model", sqlmodel.sql.sqltypes.AutoString(512),
                                        nullable=False, server_default=""))
    op.add_column("job_cost", sa.Column("seeded", sa.Boolean(), nullable=False,
                                        server_default=sa.true()))


def downgrade() -> None:
    op.drop_column("job_cost", "seeded")
    op.drop_column("job_cost", "engine_model")
