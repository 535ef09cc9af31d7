"""`--policy FILE` on `ttcq run` (and submit, through the same options)."""

from pathlib import Path

import yaml
from click.testing import CliRunner, Result
from sqlmodel import Session, select

from ttcq.api.cli import main
from ttcq.db.models import Batch, Candidate, TraceNode
from ttcq.db.session import get_engine

EXAMPLES = Path(__file__).parent.parent / "examples" / "gsm8k_sample.jsonl"
POLICY = {"probe": 2, "budget": 3, "bins": [
    {"min_confidence": 1.0, "n": 0},
    {"min_confidence": 0.0, "strategy": "majority", "n": 3}]}


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["run", *args])


def write(tmp_path: Path, policy: object) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path


def test_run_with_a_policy_stores_it_and_follows_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'local.db'}"
    result = run(str(EXAMPLES), "--strategy", "compute_optimal", "--policy",
                 str(write(tmp_path, POLICY)), "--verifier", "none", "--max-tokens", "16",
                 "--threads", "1", "--limit", "1", "--db", url)
    assert result.exit_code == 0, result.output
    with Session(get_engine(url)) as session:
        [batch] = session.exec(select(Batch)).all()
        nodes = session.exec(select(TraceNode)).all()
        candidates = session.exec(select(Candidate)).all()
    assert batch.config["policy"]["bins"][1] == {**POLICY["bins"][1], "config": {},
                                                 "share": None, "tokens": None}
    assert batch.config["n"] == 3  # the policy's budget, n not given
    [choice] = [n.text for n in nodes if n.kind == "decision"]
    assert choice.startswith("bin ") and " of 2: agreement " in choice
    assert len(candidates) == (2 if "settled" in choice else 3)


def test_a_bad_policy_file_is_refused_naming_the_field(tmp_path: Path) -> None:
    bad = {"bins": [{"min_confidence": 0.0, "n": -1}]}
    result = run(str(EXAMPLES), "--strategy", "compute_optimal", "--policy",
                 str(write(tmp_path, bad)), "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert result.exit_code != 0
    assert "--policy" in result.stderr and "policy.bins.0.n" in result.stderr


def test_batch_tokens_set_n_from_a_fitted_policy(tmp_path: Path) -> None:
    # Half the problems settle (100 tokens: the probe), half take majority n=3 (150).
    fitted = {**POLICY, "probe_tokens": 100.0, "bins": [
        {**POLICY["bins"][0], "share": 0.5, "tokens": 100.0},
        {**POLICY["bins"][1], "share": 0.5, "tokens": 150.0}]}
    url = f"sqlite:///{tmp_path / 'local.db'}"
    result = run(str(EXAMPLES), "--strategy", "compute_optimal", "--policy",
                 str(write(tmp_path, fitted)), "--batch-tokens", "220", "--verifier", "none",
                 "--max-tokens", "16", "--threads", "1", "--limit", "2", "--db", url)
    assert result.exit_code == 0, result.output
    with Session(get_engine(url)) as session:
        [batch] = session.exec(select(Batch)).all()
    # 110 a problem: n=2 is expected to cost 100 (the probe's 2 samples are the 2), n=3 125.
    assert (batch.config["n"], batch.config["batch_tokens"]) == (2, 220)


def test_batch_tokens_need_a_fitted_policy(tmp_path: Path) -> None:
    result = run(str(EXAMPLES), "--strategy", "compute_optimal", "--batch-tokens", "1000",
                 "--limit", "1", "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert result.exit_code != 0
    assert "--batch-tokens" in result.stderr and "no fitted token numbers" in result.stderr


def test_submit_resolves_batch_tokens_before_calling_the_api(tmp_path: Path) -> None:
    # Nothing listens on port 9: the policy is refused before any request is made.
    result = CliRunner().invoke(main, [
        "submit", str(EXAMPLES), "--strategy", "compute_optimal", "--batch-tokens", "5000",
        "--api-url", "http://127.0.0.1:9"])
    assert result.exit_code != 0
    assert "--batch-tokens" in result.stderr and "no fitted token numbers" in result.stderr

