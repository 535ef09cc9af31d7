"""`ttcq run`, the embedded mode: the real model, SQLite or Postgres, no Redis, no API."""

import json
from pathlib import Path

from click.testing import CliRunner, Result
from sqlmodel import Session, select

from ttcq.api.cli import main
from ttcq.db.models import Batch, Job, JobCost
from ttcq.db.session import get_engine

EXAMPLES = Path(__file__).parent.parent / "examples" / "gsm8k_sample.jsonl"
# One thread: llama.cpp's spinning threads slow to a crawl when other processes share the cores.
TINY = ["--strategy", "majority", "--n", "2", "--max-tokens", "32", "--verifier", "none",
        "--threads", "1"]
RESULT_FIELDS = {"custom_id", "problem", "gold", "answer", "correct", "status", "strategy", "n",
                 "cost", "candidates"}
CANDIDATE_FIELDS = {"text", "answer", "score", "selected", "finish"}


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["run", *args])


def test_run_solves_into_sqlite_and_writes_results(tmp_path: Path) -> None:
    url, out = f"sqlite:///{tmp_path / 'local.db'}", tmp_path / "out.jsonl"
    result = run(str(EXAMPLES), *TINY, "--limit", "2", "--db", url, "--out", str(out))
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and all(RESULT_FIELDS <= set(row) for row in rows)
    assert [row["gold"] for row in rows] == ["18", "3"]
    for row in rows:
        assert row["status"] == "succeeded" and len(row["candidates"]) == 2
        assert all(CANDIDATE_FIELDS <= set(c) for c in row["candidates"])
        assert sum(c["selected"] for c in row["candidates"]) == 1
        assert row["cost"]["completion_tokens"] > 0
    assert "time per problem" in result.stdout and "problems           2" in result.stdout
    # Live progress on stderr, ending with every problem done and the accuracy so far.
    assert "2/2 problems · 0/2 correct (0%) · " in result.stderr


def test_run_works_on_postgres_too(db_url: str) -> None:
    result = run(str(EXAMPLES), *TINY, "--max-tokens", "4", "--limit", "1", "--db", db_url)
    assert result.exit_code == 0, result.output
    with Session(get_engine(db_url)) as session:
        [job] = session.exec(select(Job)).all()
        cost = session.get(JobCost, job.id)
    assert (job.state, job.worker) == ("succeeded", "embedded")
    assert cost is not None and cost.completion_tokens > 0


def test_run_rejects_a_bad_dataset_before_creating_a_database(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "fine"}\n{"question": ')
    db = tmp_path / "never.db"
    result = run(str(bad), "--db", f"sqlite:///{db}")
    assert result.exit_code != 0 and "line 2: malformed JSON" in result.stderr
    assert not db.exists()


def test_run_refuses_labels_of_a_problem_without_a_gold_answer(tmp_path: Path) -> None:
    data = tmp_path / "labels.jsonl"
    data.write_text('{"problem": "2+2?", "answer": "4"}\n{"problem": "3+3?"}\n')
    db = tmp_path / "never.db"
    result = run(str(data), "--strategy", "math_shepherd", "--db", f"sqlite:///{db}")
    assert result.exit_code != 0 and "line 2: answer: missing" in result.stderr
    assert not db.exists()


def test_run_rejects_an_impossible_config(tmp_path: Path) -> None:
    result = run(str(EXAMPLES), "--strategy", "dvts", "--n", "6", "--beam-width", "4",
                 "--db", f"sqlite:///{tmp_path / 'never.db'}")
    assert result.exit_code != 0 and "beam_width" in result.stderr


def test_run_takes_the_adaptive_search_flags(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'local.db'}"
    flags = {
        "particle_filtering": ["--strategy", "particle_filtering", "--verifier", "self_judge",
                               "--pf-temperature", "0.5", "--pf-rounds", "2"],
        "rebase": ["--strategy", "rebase", "--verifier", "self_judge",
                   "--rebase-temperature", "0.3"],
        "majority": ["--strategy", "majority", "--verifier", "none", "--early-stop", "0.5",
                     "--early-stop-round", "1", "--early-stop-min", "1"],
    }
    for name, given in flags.items():
        result = run(str(EXAMPLES), *given, "--n", "2", "--max-tokens", "24", "--limit", "1",
                     "--threads", "1", "--db", url, "--name", name)
        assert result.exit_code == 0, result.output
    with Session(get_engine(url)) as session:
        configs = {b.name: b.config for b in session.exec(select(Batch)).all()}
        assert {j.state for j in session.exec(select(Job)).all()} == {"succeeded"}
    assert (configs["particle_filtering"]["pf_temperature"],
            configs["particle_filtering"]["pf_rounds"]) == (0.5, 2)
    assert configs["rebase"]["rebase_temperature"] == 0.3
    assert (configs["majority"]["early_stop"], configs["majority"]["early_stop_round"],
            configs["majority"]["early_stop_min"]) == (0.5, 1, 1)


def test_run_rejects_early_stopping_for_a_tree_search(tmp_path: Path) -> None:
    result = run(str(EXAMPLES), "--strategy", "beam_search", "--n", "4", "--early-stop", "0.8",
                 "--db", f"sqlite:///{tmp_path / 'never.db'}")
    assert result.exit_code != 0 and "early_stop" in result.stderr
