"""The analytics views over stored results, on Postgres."""

from sqlalchemy import text

from tests.utils.jobs import make_batch
from ttcq.db.jobs import claim_job
from ttcq.db.models import JobCostBase
from ttcq.worker.engines.base import Usage
from ttcq.worker.search.types import Candidate, SearchResult, Trace
from ttcq.worker.service import SessionFactory
from ttcq.worker.stored import store_search_result


def _solved(answers: list[str], curve: dict[int, int]) -> SearchResult:
    """Candidates giving these answers; curve: budget -> index chosen at that budget."""
    trace = Trace()
    root = trace.add(None, "prompt", "the prompt")
    candidates = []
    for i, answer in enumerate(answers):
        leaf = trace.add(root, "step", f"so \\boxed{{{answer}}}", status="finished")
        candidates.append(Candidate(index=i, group=i, leaf_id=leaf.id, text=leaf.text,
                                    finish="stop", answer=answer, canonical=answer))
    chosen = curve[max(curve)]
    candidates[chosen].selected = True
    return SearchResult("majority", candidates, trace, chosen, Usage(), Usage(), curve=curve)


def _store(sessions: SessionFactory, job_id: object, result: SearchResult, gold: str) -> None:
    cost = JobCostBase(prompt_tokens=100, cached_tokens=60, completion_tokens=20,
                       verifier_tokens=30, engine_calls=1)
    with sessions() as session:
        claim = claim_job(session=session, job_id=job_id, worker="t",  # type: ignore[arg-type]
                          lease_seconds=60, max_attempts=3)
        assert claim is not None
        assert store_search_result(session=session, claim=claim, gold=gold, result=result,
                                   cost=cost)


def _solve_two(sessions: SessionFactory) -> None:
    """Gold answers are 3 and 72: the first job is right at budgets 1 and 2, the second
    only at budget 2."""
    first, second = make_batch(sessions, problems=2, n=2)
    _store(sessions, first, _solved(["3", "4"], {1: 0, 2: 0}), "3")
    _store(sessions, second, _solved(["5", "72"], {1: 0, 2: 1}), "72")


def test_accuracy_by_budget_reads_the_stored_curves(sessions: SessionFactory) -> None:
    _solve_two(sessions)
    with sessions() as session:
        rows = session.exec(text(  # type: ignore[call-overload]
            "SELECT budget, problems, correct, accuracy FROM v_accuracy_by_budget "
            "WHERE strategy = 'majority' ORDER BY budget"
        )).all()
    assert [(b, p, c, float(a)) for b, p, c, a in rows] == [(1, 2, 1, 0.5), (2, 2, 2, 1.0)]


def test_batch_cost_sums_tokens_and_derives_rates(sessions: SessionFactory) -> None:
    _solve_two(sessions)
    with sessions() as session:
        row = session.exec(text(  # type: ignore[call-overload]
            "SELECT jobs, correct, total_tokens, cache_hit_rate, tokens_per_correct "
            "FROM v_batch_cost"
        )).one()
    # each job: 100 prompt + 20 completion + 30 verifier tokens, 60 of the prompt cached
    assert tuple(row) == (2, 2, 300, 0.6, 150.0)  # both right at the full budget
