"""Worker states for /metrics: what each worker process is doing, and when it was last seen."""

from datetime import timedelta

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select, update

from ttcq.db.models import WorkerState, utcnow


def set_worker_state(
    *, session: Session, name: str, state: str, reason: str = "", outages: int = 0
) -> None:
    """Record a change of state (running, paused, draining); also a heartbeat."""
    now = utcnow()
    values = {"name": name, "state": state, "reason": reason, "since": now, "seen_at": now,
              "outages": outages}
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(WorkerState).values(**values)
    session.exec(statement.on_conflict_do_update(
        index_elements=["name"], set_={k: v for k, v in values.items() if k != "name"}))
    session.commit()


def heartbeat(*, session: Session, name: str) -> bool:
    """Mark the worker as seen now; False if it has no state yet."""
    result = session.exec(update(WorkerState).where(col(WorkerState.name) == name)
                          .values(seen_at=utcnow()))
    session.commit()
    return result.rowcount == 1


def live_workers(*, session: Session, seen_within: float) -> list[WorkerState]:
    """Workers seen within the last seen_within seconds."""
    since = utcnow() - timedelta(seconds=seen_within)
    query = select(WorkerState).where(col(WorkerState.seen_at) >= since).order_by(
        col(WorkerState.name))
    return list(session.exec(query))
