"""From search to verifier: a TRL stepwise export trains a PRM (TRL's PRMTrainer, a few
steps on CPU in the TRL venv), vLLM serves it as a token classifier (/pooling,
token_classify), and the classifier_prm verifier scores candidates' steps with it."""

import json
import math
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from click.testing import CliRunner
from sqlmodel import col, select

from lab.servers import ROOT, server_paths, vllm_server
from tests.utils.api_factories import store_solution
from tests.utils.jobs import make_batch
from ttcq.api.cli import main
from ttcq.api.cli_labels import write_trl_parquet
from ttcq.api.label_export import trl_row
from ttcq.db.labels import LabelledSolution
from ttcq.db.models import Candidate, Job, RescoreCandidate, StepLabel
from ttcq.settings import Settings, get_settings
from ttcq.worker.backends import make_served_verifiers
from ttcq.worker.engines.base import Engine
from ttcq.worker.engines.hf_tokenizer import HFTokenizer
from ttcq.worker.engines.http import ServerClient
from ttcq.worker.service import SessionFactory
from ttcq.worker.verifiers.classifier_prm import ClassifierPRM
from ttcq.worker.verifiers.factory import ServedVerifiers, make_verifier

# Training and a vLLM start take minutes on a loaded 2-core machine.
pytestmark = [pytest.mark.servers, pytest.mark.timeout(900)]

TRAIN_STEPS = 4

# GSM8K-like problems, each with a right solution and one that goes wrong at a step
# (labelled as math_shepherd would: the wrong step and every step after it are bad).
PROBLEMS: list[tuple[str, list[str], int, list[str]]] = [
    ("Natalia sold clips to 48 of her friends in April, and then she sold half as many "
     "clips in May. How many clips did Natalia sell altogether in April and May?",
     ["In May she sold 48 / 2 = 24 clips.", "Altogether she sold 48 + 24 = 72 clips.",
      "The answer is \\boxed{72}."],
     0, ["In May she sold 48 / 2 = 26 clips.", "Altogether she sold 48 + 26 = 74 clips.",
         "The answer is \\boxed{74}."]),
    ("Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of "
     "babysitting. How much did she earn?",
     ["She earns 12 / 60 = 0.2 dollars per minute.",
      "For 50 minutes she earns 0.2 * 50 = 10 dollars.", "The answer is \\boxed{10}."],
     1, ["For 50 minutes she earns 0.2 * 50 = 100 dollars.", "The answer is \\boxed{100}."]),
    ("Betty needs $100 for a wallet. She has half of it, her parents give her $15 and her "
     "grandparents twice as much as her parents. How much more money does she need?",
     ["Betty has 100 / 2 = 50 dollars.", "Her grandparents give her 15 * 2 = 30 dollars.",
      "She still needs 100 - 50 - 15 - 30 = 5 dollars.", "The answer is \\boxed{5}."],
     2, ["She still needs 100 - 50 - 30 = 20 dollars.", "The answer is \\boxed{20}."]),
    ("James writes a 3-page letter to 2 different friends twice a week. How many pages does "
     "he write a year?",
     ["Each time he writes 3 * 2 = 6 pages.", "Each week he writes 6 * 2 = 12 pages.",
      "In a year he writes 12 * 52 = 624 pages.", "The answer is \\boxed{624}."],
     1, ["Each week he writes 6 + 2 = 8 pages.", "In a year he writes 8 * 52 = 416 pages.",
         "The answer is \\boxed{416}."]),
    ("Albert buys 2 large pizzas with 16 slices each and 2 small pizzas with 8 slices each. "
     "How many slices does he eat if he eats them all?",
     ["The large pizzas have 2 * 16 = 32 slices.", "The small pizzas have 2 * 8 = 16 slices.",
      "He eats 32 + 16 = 48 slices.", "The answer is \\boxed{48}."],
     2, ["He eats 32 + 16 = 58 slices.", "The answer is \\boxed{58}."]),
    ("A robe takes 2 bolts of blue fiber and half that much white fiber. How many bolts in "
     "total does it take?",
     ["It takes 2 / 2 = 1 bolt of white fiber.", "In total it takes 2 + 1 = 3 bolts.",
      "The answer is \\boxed{3}."],
     0, ["It takes 2 * 2 = 4 bolts of white fiber.", "In total it takes 2 + 4 = 6 bolts.",
         "The answer is \\boxed{6}."]),
    ("Mark has a garden with 10 yellow flowers and 80% more purple ones. How many purple "
     "flowers are there?",
     ["80% of 10 is 10 * 0.8 = 8.", "There are 10 + 8 = 18 purple flowers.",
      "The answer is \\boxed{18}."],
     1, ["There are 10 * 8 = 80 purple flowers.", "The answer is \\boxed{80}."]),
    ("Tina makes $18 an hour and works 10 hours a day for 5 days. How much does she make?",
     ["Each day she makes 18 * 10 = 180 dollars.", "In 5 days she makes 180 * 5 = 900 dollars.",
      "The answer is \\boxed{900}."],
     1, ["In 5 days she makes 180 + 5 = 185 dollars.", "The answer is \\boxed{185}."]),
]


def export_rows() -> list[dict[str, Any]]:
    """Rows made by `ttcq export --format trl`'s own row builder: a right and a wrong
    solution of each problem, labelled as Math-Shepherd would (soft 0.75 where good)."""
    rows = []
    for i, (problem, right, wrong_at, wrong_tail) in enumerate(PROBLEMS):
        wrong = right[:wrong_at] + wrong_tail
        labels = [[True] * len(right), [True] * wrong_at + [False] * len(wrong_tail)]
        for candidate, (steps, good) in enumerate(zip([right, wrong], labels, strict=True)):
            step_labels = [StepLabel(job_id=uuid.UUID(int=i), candidate=candidate, step=step,
                                     node_id=step + 1, method="math_shepherd", rollouts=8,
                                     successes=6 if g else 0, hard=g, soft=0.75 if g else 0.0)
                           for step, g in enumerate(good)]
            solution = LabelledSolution(uuid.UUID(int=i), i + 1, problem, None, candidate,
                                        all(good), [f"{s}\n\n" for s in steps], step_labels)
            rows.append(trl_row(solution))
    return rows


@pytest.fixture(scope="module")
def trl_export_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rows as `ttcq export -o prm.parquet` writes them."""
    path = tmp_path_factory.mktemp("export") / "prm.parquet"
    write_trl_parquet(export_rows(), path)
    return path


@pytest.fixture(scope="module")
def trained_prm(trl_export_file: Path,
                tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The PRM trained once per run, and what the training script reported."""
    paths, out = server_paths(), tmp_path_factory.mktemp("prm") / "model"
    stdout = _trl_python(str(ROOT / "lab" / "prm_training.py"), str(trl_export_file),
                         paths["TTCQ_POLICY_MODEL_DIR"], str(out), "--steps", str(TRAIN_STEPS))
    return out, json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def served_prm(trained_prm: tuple[Path, dict[str, Any]],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ClassifierPRM, str]]:
    """The trained PRM on vLLM's pooling runner, behind the verifier; and the server's URL."""
    folder = trained_prm[0]
    log = tmp_path_factory.mktemp("servers") / "vllm-prm.log"
    with vllm_server(str(folder), log, name="prm", pooling=True) as server:
        client = ServerClient(server.url, name="vllm classifier PRM")
        yield ClassifierPRM(client, HFTokenizer(folder), model="prm"), server.url
        client.close()


QUESTION = PROBLEMS[0][0]
CANDIDATES = [PROBLEMS[0][1], PROBLEMS[0][3], PROBLEMS[0][1][:1]]  # right, wrong, one step


def test_the_export_trains_a_two_label_token_classifier(
    trained_prm: tuple[Path, dict[str, Any]],
) -> None:
    folder, report = trained_prm
    assert len(report["losses"]) == TRAIN_STEPS
    assert all(math.isfinite(loss) for loss in report["losses"])
    load = ("import sys; from transformers import AutoModelForTokenClassification as M; "
            "m = M.from_pretrained(sys.argv[1]); print(type(m).__name__, m.config.num_labels)")
    done = _trl_python("-c", load, str(folder))
    assert done.split() == ["LlamaForTokenClassification", "2"]


def test_the_verifier_rebuilds_the_trainers_tokens(
    trained_prm: tuple[Path, dict[str, Any]],
) -> None:
    """The ids and judged positions the verifier sends are those TRL trained on."""
    folder, report = trained_prm
    row = export_rows()[1]
    tokenize = ("import json, sys; from transformers import AutoTokenizer; "
                "from trl.experimental.prm import PRMTrainer; "
                "row = json.loads(sys.argv[2]); "
                "row = {**row, 'prompt': row['prompt'].strip(), "
                "'completions': [c.strip() for c in row['completions']]}; "
                "out = PRMTrainer.tokenize_row(row, AutoTokenizer.from_pretrained(sys.argv[1]), "
                "sys.argv[3], None, None, False, False); print(json.dumps(out))")
    trained = json.loads(_trl_python("-c", tokenize, str(folder), json.dumps(row),
                                     report["step_separator"]))
    prm = ClassifierPRM(ServerClient("http://127.0.0.1:9", name="unused"), HFTokenizer(folder))
    ids, judged = prm.prompt(row["prompt"], row["completions"])
    assert ids == trained["input_ids"]
    assert judged == [i for i, label in enumerate(trained["labels"]) if label != -100]
    assert [trained["labels"][i] for i in judged] == [int(x) for x in row["labels"]]


def test_the_served_prm_scores_each_step(served_prm: tuple[ClassifierPRM, str]) -> None:
    prm, _ = served_prm
    out = prm.score(QUESTION, [*CANDIDATES, []])
    assert [len(s) for s in out.scores] == [3, 3, 1, 0]
    assert all(0.0 <= s <= 1.0 for scores in out.scores for s in scores)
    # token_classify never reads vLLM's prefix cache: every token is processed.
    sent = sum(len(prm.prompt(QUESTION, steps)[0]) for steps in CANDIDATES)
    assert (out.usage.prompt_tokens, out.usage.cached_tokens, out.usage.calls) == (sent, 0, 1)
    last = prm.score(QUESTION, CANDIDATES, last_only=True).scores
    # Alone or in another batch, the same score up to bf16 rounding.
    assert last == [[pytest.approx(s[-1], abs=0.01)] for s in out.scores[:3]]


def test_the_scores_are_the_pooling_outputs_at_the_separators(
    served_prm: tuple[ClassifierPRM, str],
) -> None:
    prm, url = served_prm
    ids, judged = prm.prompt(QUESTION, CANDIDATES[1])
    reply = httpx.post(f"{url}/pooling", json={"model": "prm", "input": ids,
                                               "task": "token_classify"}, timeout=120).json()
    per_token = reply["data"][0]["data"]  # [P(bad), P(good)] for every token
    assert len(per_token) == len(ids) and all(len(p) == 2 for p in per_token)
    assert prm.score(QUESTION, [CANDIDATES[1]]).scores[0] == \
        pytest.approx([per_token[i][1] for i in judged], abs=1e-6)


def test_a_worker_finds_the_classifier_prm_from_settings(
    served_prm: tuple[ClassifierPRM, str],
) -> None:
    """TTCQ_CLASSIFIER_PRM_URL alone: the tokenizer comes from the folder vLLM serves."""
    _, url = served_prm
    served = make_served_verifiers(Settings(classifier_prm_url=url, classifier_prm_model="prm"))
    verifier = make_verifier("classifier_prm", cast(Engine, None), served)
    assert verifier is served.classifier_prm
    assert [len(s) for s in verifier.score(QUESTION, CANDIDATES[:1]).scores] == [3]
    served.classifier_prm.server.close()


def test_a_classifier_prm_without_a_server_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="TTCQ_CLASSIFIER_PRM_URL"):
        make_verifier("classifier_prm", cast(Engine, None), ServedVerifiers())


def _trl_python(*args: str) -> str:
    """Run the TRL venv's python; its stdout."""
    done = subprocess.run([server_paths()["TTCQ_TRL_PYTHON"], *args], capture_output=True,
                          text=True, timeout=300, check=False,
                          env={**os.environ, "HF_HUB_OFFLINE": "1",
                               "TRL_EXPERIMENTAL_SILENCE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_ttcq_rescore_scores_a_stored_batch_with_the_trained_prm(
    served_prm: tuple[ClassifierPRM, str], sessions: SessionFactory, db_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The loop closed: the PRM trained on the export rescores stored candidates."""
    verifier, url = served_prm
    [job_id] = make_batch(sessions)
    store_solution(sessions, job_id, ["5", "7"])
    monkeypatch.setenv("TTCQ_CLASSIFIER_PRM_URL", url)
    monkeypatch.setenv("TTCQ_CLASSIFIER_PRM_MODEL", "prm")
    get_settings.cache_clear()
    try:
        with sessions() as session:
            job = session.get(Job, job_id)
            assert job is not None
            batch_id, problem = job.batch_id, job.problem
        result = CliRunner().invoke(main, ["rescore", str(batch_id), "--verifier",
                                           "classifier_prm", "--db", db_url])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    with sessions() as session:
        stored = session.exec(select(RescoreCandidate.idx, RescoreCandidate.step_scores)
                              .order_by(col(RescoreCandidate.idx))).all()
        texts = session.exec(select(Candidate.text).where(Candidate.job_id == job_id)
                             .order_by(col(Candidate.idx))).all()
    direct = verifier.score(problem, [[text] for text in texts]).scores
    # vLLM's CPU runner computes in bf16: the same sequence in another batch can differ in
    # the third decimal (seen: 0.3581 against 0.3610).
    assert [scores for _, scores in stored] == [pytest.approx(s, abs=0.02) for s in direct]
