"""Reads of a job's search tree for drawing it: every node without its text (a preview and
the length only, so a tree of thousands of nodes stays small), and one node whole."""

import uuid
from typing import Any

from sqlalchemy import func
from sqlalchemy import select as select_columns
from sqlmodel import Session, col

from ttcq.db.models import TraceNode

PREVIEW_CHARS = 80

_COLUMNS = ("node_id", "parent_id", "depth", "kind", "status", "prompt_tokens",
            "cached_tokens", "completion_tokens", "step_score", "agg_score", "visits",
            "q_value")


def tree_nodes(*, session: Session, job_id: uuid.UUID) -> list[dict[str, Any]]:
    """The job's trace nodes by id, each with a preview of its text and its length."""
    query = (
        select_columns(*(getattr(TraceNode, name) for name in _COLUMNS),
                       func.left(col(TraceNode.text), PREVIEW_CHARS).label("preview"),
                       func.length(col(TraceNode.text)).label("chars"))
        .where(col(TraceNode.job_id) == job_id).order_by(col(TraceNode.node_id))
    )
    return [dict(row._mapping) for row in session.execute(query)]


def trace_node(*, session: Session, job_id: uuid.UUID, node_id: int) -> TraceNode | None:
    return session.get(TraceNode, (job_id, node_id))


def path_to(nodes: list[dict[str, Any]], leaf: int) -> list[int]:
    """Node ids from the root down to leaf (empty if leaf is not among the nodes)."""
    parents = {node["node_id"]: node["parent_id"] for node in nodes}
    path: list[int] = []
    current: int | None = leaf if leaf in parents else None
    while current is not None and len(path) <= len(parents):  # a cycle cannot loop forever
        path.append(current)
        current = parents.get(current)
    return path[::-1]
