"""What an interrupted attempt costs the job: the blame rule.

A job has max_attempts strikes, not max_attempts runs. An interruption shared with other
searches (the worker died or was preempted, its engine went away, it was drained) says
nothing about this job, so it is never a strike:

- an attempt that saved a checkpoint made progress: its interruption costs nothing, and
  the job's count of stalls starts again;
- one that made none, among other jobs, is a *stall*: also free, but after STALLS_ALONE
  stalls in a row the job's next run is *alone* (its worker runs nothing else meanwhile);
- one that made none while alone is a *strike*: nothing else could have caused it.

So a poison job (it crashes its worker, or its engine, before any progress) fails after
STALLS_ALONE shared losses and max_attempts lone ones, and no healthy job is charged for
its crashes: while the poison runs alone, nobody shares them. A healthy job is charged only
when it is lost alone without progress max_attempts times; a job that progresses between
losses is never charged, and its search has finitely many steps.

Failures that follow the job itself are strikes at once (a transient engine error while
the engine serves others) or final (its search raised, the server refused its request,
it ran past its time limit)."""

from typing import Literal

Charge = Literal["none", "stall", "strike"]
# How an attempt ended: lost (its lease expired: the worker died), yielded (handed back at
# a step boundary: a drain, or room for a job that must run alone), outage (the engine
# answered no job), transient (an engine error that followed this job), failed (final).
Outcome = Literal["lost", "yielded", "outage", "transient", "failed"]
STALLS_ALONE = 2


def charge_for(*, outcome: Outcome, progress: bool, alone: bool) -> Charge:
    if outcome == "yielded" or (progress and outcome != "transient"):
        return "none"
    if outcome == "transient" or alone:
        return "strike"
    return "stall"


def must_run_alone(stalls: int) -> bool:
    return stalls >= STALLS_ALONE
