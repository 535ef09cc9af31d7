"""s1 budget forcing for sampled thoughts (Muennighoff et al. 2025), and answer probing
(probing.py) for them.

A thought is generated up to think_budget T tokens, stopping at think_close. One that has
not closed by then (or ended without closing) gets think_close and ANSWER_CUE appended, and
the answer is generated from there, continued by token ids. With think_min M, a thought
that closes before M tokens has its think_close replaced by think_wait and goes on. With
probe_every K, thoughts grow K tokens a call and are probed between calls; one whose
probes settle ends with its last probe as its answer.

Every engine call's tokens land on trace nodes exactly as the engine reported them: a
segment's prompt tokens on its first node, its generated tokens on its step nodes (a
replaced close tag, or an end-of-sequence token, on the segment's last one). Text ttcq
appends is a "forced" node holding no tokens: the next call counts them as prompt."""

from dataclasses import dataclass, field, replace
from typing import Literal

from ttcq.worker.engines.base import (
    Completion,
    FinishReason,
    GenerationRequest,
    SamplingParams,
)
from ttcq.worker.search.answers import has_boxed_answer
from ttcq.worker.search.config import SearchConfig
from ttcq.worker.search.probing import ProbeLog, inside_thought, probe
from ttcq.worker.search.run import SearchRun
from ttcq.worker.search.steps import split_steps
from ttcq.worker.search.thinking import (
    ANSWER_CUE,
    FORCED_ANSWER_TOKENS,
    tokens_before_close,
)
from ttcq.worker.search.types import Candidate, TraceNode

# Continuation calls of sample j are seeded j + round * stride: never the first call's
# seed again (which would replay its random stream), and apart from other samples'.
ROUND_SEED_STRIDE = 1 << 20

Stage = Literal["think", "answer", "done"]


@dataclass
class Forced:
    """One sample under budget forcing: its tokens after the prompt, its text and path."""

    index: int
    node: TraceNode
    ids: list[int]
    text: str = ""
    thought: int = 0  # tokens of the thought so far, forced think_wait included
    stage: Stage = "think"
    answer_tokens: int = 0
    finish: FinishReason = "length"
    calls: int = 1  # this sample's engine calls so far: its next call's seed round
    probes: ProbeLog = field(default_factory=ProbeLog)

    def next_seed(self) -> int:
        """Its own rounds, not the call's: a sample is the same however it was batched."""
        seed = self.index + self.calls * ROUND_SEED_STRIDE
        self.calls += 1
        return seed


def check_budget(run: SearchRun) -> None:
    """A budget must leave room beyond the forced continuation, and a minimum below it."""
    c = run.config
    if c.think_budget is None:
        return
    cue = len(run.engine.tokenize(c.think_close + ANSWER_CUE))
    if c.think_budget <= cue:
        raise ValueError(f"think_budget: {c.think_budget} tokens is not more than the {cue} "
                         f"tokens of the forced answer continuation "
                         f"{c.think_close + ANSWER_CUE!r}")
    if c.think_min is not None and c.think_min >= c.think_budget:
        raise ValueError(f"think_min: {c.think_min} must be below think_budget "
                         f"({c.think_budget})")


def draw_forced(run: SearchRun, start: int, count: int) -> list[Candidate]:
    """Samples start .. start+count-1, each a budget-forced thought and its answer; the
    first call is draw_samples' own (one request, n samples), the rest one per round."""
    check_budget(run)
    c = run.config
    samples = [Forced(start + j, run.root, []) for j in range(count)]
    first = GenerationRequest(run.prompt_ids, _thought_params(run, _ask(c, samples[0]), start),
                              count)
    for sample, completion in zip(samples, run.generate([first])[0], strict=True):
        _after_thought(run, sample, completion)
    while True:
        _probe_due(run, [s for s in samples if s.stage == "think"])
        if not (thinking := [s for s in samples if s.stage == "think"]):
            break
        requests = [GenerationRequest(run.prompt_ids + tuple(s.ids), _thought_params(
            run, _ask(c, s), s.next_seed())) for s in thinking]
        for sample, out in zip(thinking, run.generate(requests), strict=True):
            _after_thought(run, sample, out[0])
    if answering := [s for s in samples if s.stage == "answer"]:
        requests = [GenerationRequest(run.prompt_ids + tuple(s.ids), run.params(
            max_tokens=s.answer_tokens, seed=s.next_seed())) for s in answering]
        for sample, out in zip(answering, run.generate(requests), strict=True):
            _after_answer(run, sample, out[0])
    return [Candidate(index=s.index, group=s.index, leaf_id=s.node.id, text=s.text,
                      finish=s.finish) for s in samples]


def _limit(config: SearchConfig) -> int:
    return config.think_budget if config.think_budget is not None else config.max_tokens


def _ask(config: SearchConfig, s: Forced) -> int:
    """Thinking tokens the sample's next call may write: to its budget, or its next probe."""
    room = _limit(config) - s.thought
    return room if config.probe_every is None else min(room, config.probe_every - s.probes.since)


def _answer_room(config: SearchConfig, s: Forced) -> int:
    """The answer's tokens after a thought that closed by itself: max_tokens of its own
    under a thinking budget, else what the thought left of max_tokens (as unforced)."""
    if config.think_budget is not None:
        return config.max_tokens
    return max(1, config.max_tokens - s.thought)


def _probe_due(run: SearchRun, thinking: list[Forced]) -> None:
    """Probe the samples due in one call; a settled one ends with its probe as answer."""
    c = run.config
    due = [s for s in thinking if s.probes.due(c.probe_every)]
    for s in due:
        if not inside_thought(run, s.text):
            s.probes.since = 0  # no probe outside a thought, nor inside its close tag
    due = [s for s in due if s.probes.since]
    if not due:
        return
    probes = probe(run, [(run.prompt_ids + tuple(s.ids), s.node) for s in due],
                   [s.probes for s in due])
    for s, done in zip(due, probes, strict=True):
        if s.probes.settled(c.probe_agree):
            done.node.status = "finished"
            s.node, s.stage, s.finish = done.node, "done", "stop"
            s.ids += done.token_ids
            s.text += done.node.text


def _thought_params(run: SearchRun, max_tokens: int, seed: int) -> SamplingParams:
    # Stopping at the close lets ttcq decide what follows it: think_wait or the answer.
    return replace(run.params(max_tokens=max_tokens, seed=seed), stop=(run.config.think_close,))


def _after_thought(run: SearchRun, s: Forced, completion: Completion) -> None:
    c = run.config
    if _closed_across_cut(c.think_close, s.text, completion.text):
        _answered_in_thought_call(run, s, completion)
        return
    if c.think_close in completion.text:
        kept = tokens_before_close(run.engine, completion, c.think_close)
        if c.think_min is not None and s.thought + kept < c.think_min:
            ids = completion.token_ids[:kept]
            _segment(run, s, ids, run.engine.detokenize(ids) if ids else "", completion)
            _force(run, s, c.think_wait, in_thought=True)
            if s.thought >= _limit(c):
                _close_or_cut(run, s, "length")
            return
        _segment(run, s, completion.token_ids, completion.text, completion)
        s.stage, s.answer_tokens = "answer", _answer_room(c, s)
        return
    # Not closed: at the budget, or an end of sequence inside the thought (dropped from
    # what is continued; still counted on the node).
    eos = set(run.engine.info.eos_token_ids)
    ids = list(completion.token_ids)
    while ids and ids[-1] in eos:
        ids.pop()
    _segment(run, s, ids, completion.text, completion)
    if (run.config.probe_every is not None and completion.finish_reason == "length"
            and ids and s.thought < _limit(c)):
        return  # a probing call's end: the sample thinks on after its probe
    _close_or_cut(run, s, completion.finish_reason)


def _closed_across_cut(close: str, before: str, text: str) -> bool:
    """Whether think_close began at the end of the last call and ends in this one: no
    stop string matches across a prompt, so the model went on into its answer."""
    tail = before[max(0, len(before) - len(close) + 1):]
    return close not in text and close in tail + text


def _answered_in_thought_call(run: SearchRun, s: Forced, completion: Completion) -> None:
    """The thought closed by itself (think_min cannot replace a close already answered
    after): the answer is what follows, continued if the call was cut before its box."""
    eos = set(run.engine.info.eos_token_ids)
    ids = list(completion.token_ids)
    while ids and ids[-1] in eos:
        ids.pop()
    _segment(run, s, ids, completion.text, completion)
    boxed = has_boxed_answer(run.answer_part(s.text))
    if completion.finish_reason == "length" and not boxed:
        s.stage, s.answer_tokens = "answer", _answer_room(run.config, s)
        return
    s.stage, s.finish = "done", "stop" if boxed else completion.finish_reason
    s.node.status = "finished" if s.finish == "stop" else "truncated"


def _close_or_cut(run: SearchRun, s: Forced, finish: FinishReason) -> None:
    """With a budget, close the thought and ask for the answer; without one (think_min
    alone) the thought stays cut off: no answer."""
    c = run.config
    if c.think_budget is None:
        s.stage, s.finish = "done", finish
        s.node.status = "finished" if finish == "stop" else "truncated"
        return
    _force(run, s, c.think_close + ANSWER_CUE, in_thought=False)
    s.stage, s.answer_tokens = "answer", min(c.max_tokens, FORCED_ANSWER_TOKENS)


def _after_answer(run: SearchRun, s: Forced, completion: Completion) -> None:
    _segment(run, s, completion.token_ids, completion.text, completion)
    # A box after the close is the answer asked for, even if the model rambles on.
    boxed = has_boxed_answer(run.answer_part(s.text))
    s.stage, s.finish = "done", "stop" if boxed else completion.finish_reason
    s.node.status = "finished" if s.finish == "stop" else "truncated"


def _segment(run: SearchRun, s: Forced, ids: list[int], text: str,
             completion: Completion) -> None:
    """Record what the model wrote (ids, text: the part kept) as step nodes under s's path,
    with every token of the call, and extend s by it."""
    pieces = split_steps(run.engine, ids, text, run.config.step_delimiter)
    for i, (piece, n_tokens) in enumerate(pieces):
        s.node = run.trace.add(s.node, "step", piece)
        s.node.completion_tokens = n_tokens
        if i == 0:
            s.node.prompt_tokens = completion.prompt_tokens
            s.node.cached_tokens = completion.cached_tokens
    s.node.completion_tokens += completion.completion_tokens - len(ids)
    s.ids += ids
    s.text += text
    if s.stage == "think":
        s.thought += len(ids)
        s.probes.since += len(ids)


def _force(run: SearchRun, s: Forced, text: str, *, in_thought: bool) -> None:
    ids = run.engine.tokenize(text)
    s.node = run.trace.add(s.node, "forced", text)
    s.ids += ids
    s.text += text
    if in_thought:
        s.thought += len(ids)
