"""Answer probing mid-thought (Dynasor-CoT, Fu et al. 2024): every probe_every thinking
tokens, ask the model for its answer so far and stop the trace once its last probe_agree
answers agree.

A probe continues the trace's token ids (so the radix cache keeps the prefix) with the
thought closed and ANSWER_CUE, and generates a few tokens greedily: the box's contents.
Each probe is a "probe" trace node holding its call's tokens. A trace that settles ends
with its last probe as its answer (that node joins its path); the other probes stay side
branches, pruned. Probe tokens are answer tokens, not thinking tokens."""

from collections.abc import Sequence
from dataclasses import dataclass, field

from ttcq.worker.engines.base import GenerationRequest
from ttcq.worker.search.answers import canonical_answer, closing_box
from ttcq.worker.search.run import SearchRun
from ttcq.worker.search.thinking import ANSWER_CUE, FORCED_ANSWER_TOKENS, thought_open_after
from ttcq.worker.search.types import TraceNode


@dataclass
class ProbeLog:
    """One trace's probes: its thinking tokens since the last one and the answers read."""

    since: int = 0
    answers: list[str | None] = field(default_factory=list)

    def due(self, every: int | None) -> bool:
        return every is not None and self.since >= every

    def settled(self, agree: int) -> bool:
        """The last `agree` answers are one and the same (a probe without a closed box
        reads as no answer and agrees with nothing)."""
        last = self.answers[-agree:]
        return len(last) == agree and last[0] is not None and len(set(last)) == 1


@dataclass(frozen=True)
class Probe:
    node: TraceNode  # the probe's node: its text is the cue and what the model wrote
    token_ids: tuple[int, ...]  # what the probe appended to the trace: cue and answer
    answer: str | None


def inside_thought(run: SearchRun, reply: str) -> bool:
    """Whether a reply so far ends inside its thought, and not in the middle of its close
    tag: only there may a probe close it."""
    c = run.config
    if thought_open_after(reply, c.think_open, c.think_close, run.opened_by_prompt) is not True:
        return False
    return not any(reply.endswith(c.think_close[:k]) for k in range(1, len(c.think_close)))


def probe_cue(run: SearchRun) -> str:
    return run.config.think_close + ANSWER_CUE


def probe(run: SearchRun, traces: Sequence[tuple[Sequence[int], TraceNode]],
          logs: Sequence[ProbeLog]) -> list[Probe]:
    """Probe each (token ids, node) trace in one engine call; the answers go to its log."""
    cue = probe_cue(run)
    cue_ids = tuple(run.engine.tokenize(cue))
    # Greedy: the model's likeliest answer now, not a sample of it (no seed needed).
    params = run.params(max_tokens=FORCED_ANSWER_TOKENS, seed=0, greedy=True)
    requests = [GenerationRequest(tuple(ids) + cue_ids, params) for ids, _ in traces]
    probes = []
    for (_, parent), log, [out] in zip(traces, logs, run.generate(requests), strict=True):
        node = run.trace.add(parent, "probe", cue + out.text, out, status="pruned")
        boxed = closing_box(out.text)
        answer = canonical_answer(boxed) if boxed else None
        log.answers.append(answer)
        log.since = 0
        probes.append(Probe(node, cue_ids + tuple(out.token_ids), answer))
    return probes

