"""analytics views: accuracy by strategy x budget x level, tokens per correct answer,
cache-hit rate and cost per batch

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEWS = ["v_accuracy_by_budget", "v_batch_cost", "v_job_outcome"]


def _json_text(column: str, key: str) -> str:
    if op.get_bind().dialect.name == "postgresql":
        return f"({column}->>'{key}')"
    return f"json_extract({column}, '$.{key}')"


def upgrade() -> None:
    level, subject = _json_text("j.meta", "level"), _json_text("j.meta", "subject")
    n, verifier = _json_text("b.config", "n"), _json_text("b.config", "verifier")
    width, lookahead = _json_text("b.config", "beam_width"), _json_text("b.config", "lookahead")
    op.execute(f"""
        CREATE VIEW v_job_outcome AS
        SELECT j.id AS job_id, j.batch_id, b.owner, b.strategy, CAST({n} AS INTEGER) AS n,
               {verifier} AS verifier, {level} AS level, {subject} AS subject,
               j.state, j.correct, j.attempts,
               c.prompt_tokens, c.cached_tokens, c.completion_tokens, c.verifier_tokens,
               c.verifier_cached_tokens, c.engine_calls, c.wall_seconds, c.engine_seconds,
               c.flops,
               c.prompt_tokens + c.completion_tokens + c.verifier_tokens AS total_tokens
        FROM job j JOIN batch b ON b.id = j.batch_id
        LEFT JOIN job_cost c ON c.job_id = j.id
    """)
    op.execute(f"""
        CREATE VIEW v_accuracy_by_budget AS
        SELECT b.model, b.strategy, {verifier} AS verifier,
               CAST({width} AS INTEGER) AS beam_width, CAST({lookahead} AS INTEGER) AS lookahead,
               p.n AS budget, {level} AS level,
               COUNT(*) AS problems, COUNT(p.correct) AS graded,
               SUM(CASE WHEN p.correct THEN 1 ELSE 0 END) AS correct,
               -- over graded problems only: a problem without a gold answer is not wrong
               AVG(CASE WHEN p.correct THEN 1.0 WHEN NOT p.correct THEN 0.0 END) AS accuracy
        FROM budget_point p JOIN job j ON j.id = p.job_id JOIN batch b ON b.id = j.batch_id
        GROUP BY b.model, b.strategy, {verifier}, {width}, {lookahead}, p.n, {level}
    """)
    op.execute("""
        CREATE VIEW v_batch_cost AS
        SELECT o.batch_id, o.owner, o.strategy, o.n, COUNT(*) AS jobs,
               SUM(CASE WHEN o.state = 'succeeded' THEN 1 ELSE 0 END) AS succeeded,
               SUM(CASE WHEN o.correct THEN 1 ELSE 0 END) AS correct,
               SUM(o.prompt_tokens) AS prompt_tokens, SUM(o.cached_tokens) AS cached_tokens,
               SUM(o.completion_tokens) AS completion_tokens,
               SUM(o.verifier_tokens) AS verifier_tokens, SUM(o.total_tokens) AS total_tokens,
               SUM(o.engine_calls) AS engine_calls, SUM(o.wall_seconds) AS wall_seconds,
               SUM(o.flops) AS flops,
               CAST(SUM(o.cached_tokens) AS FLOAT) / NULLIF(SUM(o.prompt_tokens), 0)
                   AS cache_hit_rate,
               CAST(SUM(o.total_tokens) AS FLOAT)
                   / NULLIF(SUM(CASE WHEN o.correct THEN 1 ELSE 0 END), 0)
                   AS tokens_per_correct
        FROM v_job_outcome o
        GROUP BY o.batch_id, o.owner, o.strategy, o.n
    """)


def downgrade() -> None:
    for view in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
