"""What answer probing (Dynasor, --probe-every K --probe-agree A) saves on the ground-truth
thought model: the real search (majority over probed samples on GroundTruthEngine, no
database) beside the independent numpy simulation (lab.ground_truth.simulate_probing), per
setting, for one sample and a majority of n, against the same search unprobed; a markdown
table of accuracy and generated tokens per sample (thinking, probes, answers).

    .venv/bin/python -m lab.probing_evidence --problems 1000
"""

import argparse
from dataclasses import dataclass
from statistics import mean

import numpy as np

from lab.ground_truth.engine import GroundTruthEngine
from lab.ground_truth.simulate_probing import Probing, Run, majority
from lab.ground_truth.task import make_dataset, specs_of
from lab.ground_truth.thought import Thinking
from ttcq.worker.search.config import make_config
from ttcq.worker.search.registry import run_search
from ttcq.worker.search.types import Problem
from ttcq.worker.verifiers.base import NoVerifier

MAX_TOKENS = 8192
SETTINGS = ((None, 3), (224, 3), (112, 4), (112, 3), (56, 2))  # (K, A); K None: unprobed


@dataclass(frozen=True)
class Searched:
    run: Run
    stopped_wrong: int  # samples that stopped at agreeing probes on a wrong answer


def searched(model: Thinking, probing: Probing, n: int, problems: int) -> list[Searched]:
    engine = GroundTruthEngine(thinking=model)
    config = make_config(strategy="majority", verifier="none", n=n, max_tokens=MAX_TOKENS,
                         think_budget=probing.budget, probe_every=probing.every,
                         probe_agree=probing.agree)
    out = []
    for row in make_dataset(problems, seed=31):
        result = run_search(Problem(row["problem"], row["answer"]), config, engine,
                            NoVerifier())
        nodes = result.trace.nodes
        probes = sum(node.completion_tokens for node in nodes if node.kind == "probe")
        thinking = result.thinking_tokens
        wrong = sum(nodes[c.leaf_id].kind == "probe" and c.answer != row["answer"]
                    for c in result.candidates)
        out.append(Searched(Run(result.answer == row["answer"], thinking, probes,
                                result.generation.completion_tokens - thinking - probes),
                            wrong))
    return out


def simulated(model: Thinking, probing: Probing, n: int, problems: int) -> list[Run]:
    rng = np.random.default_rng(32)
    return [majority(spec, model, probing, n, rng)
            for spec in specs_of(make_dataset(problems, seed=33))]


def row(probing: Probing, n: int, measured: list[Searched], reference: list[Run],
        unprobed: float) -> str:
    runs = [s.run for s in measured]

    def per_sample(of: list[Run], field: str) -> float:
        return mean(getattr(r, field) for r in of) / n

    accuracy = mean(r.correct for r in runs)
    se = (accuracy * (1 - accuracy) / len(runs)) ** 0.5
    generated = per_sample(runs, "generated")
    saved = 1 - generated / unprobed
    settled_wrong = mean(s.stopped_wrong for s in measured) / n
    setting = "none" if probing.every is None else f"{probing.every} / {probing.agree}"
    if probing.budget is not None:
        setting += f", T = {probing.budget}"
    cells = [setting, str(n), f"{accuracy:.3f} ± {se:.3f}",
             f"{mean(r.correct for r in reference):.3f}"]
    cells += [f"{per_sample(runs, f):,.0f} ({per_sample(reference, f):,.0f})"
              for f in ("thinking", "probing", "answering")]
    cells += [f"{generated:,.0f}", f"{saved:.0%}", f"{settled_wrong:.1%}"]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=1000)
    parser.add_argument("--simulated", type=int, default=10000)
    parser.add_argument("--mean-attempts", type=float, default=24.0)
    parser.add_argument("--vote", type=int, default=8, help="n of the majority rows")
    args = parser.parse_args()
    model = Thinking(args.mean_attempts)
    print("| K / A | n | accuracy, search ± se | simulation | thinking / sample (sim.) "  # noqa: T201
          "| probes | answer | generated | saved | stopped on a wrong answer |")
    print("|---|---|---|---|---|---|---|---|---|---|")  # noqa: T201
    cases = [(Probing(k, a, max_tokens=MAX_TOKENS), n) for n in (1, args.vote)
             for k, a in SETTINGS]
    cases += [(Probing(k, 3, 512, MAX_TOKENS), 1) for k in (None, 112)]
    unprobed = 0.0
    for probing, n in cases:
        measured = searched(model, probing, n, args.problems)
        if probing.every is None:  # the baseline of the rows that follow
            unprobed = mean(s.run.generated for s in measured) / n
        print(row(probing, n, measured,  # noqa: T201
                  simulated(model, probing, n, args.simulated), unprobed))


if __name__ == "__main__":
    main()
