"""DeepConf (Fu et al. 2025): parallel traces filtered by the model's own token confidence.

A token's confidence is minus the mean of its top-k logprobs (high: the model was sure); a
group's is the mean over a sliding window of deepconf_window tokens; a trace's is its
lowest group confidence. Traces grow in chunks (up to chunk_tokens, ending at a step
delimiter), each continuing the trace by token ids, so the radix cache keeps its prefix.

- offline: all n traces run to the end; the η% (deepconf_keep) most confident vote, each
  with its confidence as weight.
- online: a warm-up of deepconf_warmup traces runs to the end and sets the threshold, the
  (100 - η)th percentile of their confidences. The other traces run a batch of warm-up size
  at a time; one with a full window whose group confidence falls below the threshold stops
  there (a "stop" node says why and holds its confidence; it is no candidate). Sampling
  stops once the leading answer holds CONSENSUS of the confidence-weighted vote, or the
  budget n is spent. As in the authors' reference code (facebookresearch/deepconf,
  deepconf-online.py), the warm-up traces at or above the threshold and the survivors vote,
  weighted by confidence.

A trace ends at the end of the sequence, at an answer in its answer part (not in a
thought), or when its token budget (or the model's context) is spent: chunks are no steps,
so max_depth does not apply. Every trace's confidence is its candidate's score; the vote
picks among candidates."""

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from ttcq.worker.engines.base import Completion, Engine, EngineError, GenerationRequest
from ttcq.worker.search.answers import has_boxed_answer
from ttcq.worker.search.config import SearchConfig
from ttcq.worker.search.probing import ProbeLog, inside_thought, probe
from ttcq.worker.search.run import SearchRun
from ttcq.worker.search.tree import Beam, BeamState, TreeSearch
from ttcq.worker.search.types import Candidate, Problem, SearchResult
from ttcq.worker.verifiers.base import Verifier

CONSENSUS = 0.95  # online: the leader's share of the weighted vote that stops sampling


@dataclass
class Chain:
    """One trace: its path so far and the confidence of every token it generated."""

    beam: Beam
    confidences: list[float] = field(default_factory=list)
    new_tokens: int = 0  # of the latest chunk
    asked: int = 0  # tokens the latest chunk could have had
    stopped: bool = False
    thinking: bool = False  # inside a thought at the end of the latest chunk
    probes: ProbeLog = field(default_factory=ProbeLog)

    @property
    def open(self) -> bool:
        return self.beam.state == "open" and not self.stopped


LOGPROB_FLOOR = -100.0  # a probability a server rounded to 0 must not outweigh the rest


def token_confidence(top_logprobs: Sequence[float]) -> float:
    if not top_logprobs:
        return 0.0
    return -sum(max(lp, LOGPROB_FLOOR) for lp in top_logprobs) / len(top_logprobs)


def completion_confidences(completion: Completion, needed_by: str, k: int) -> list[float]:
    """Each generated token's confidence; an engine that sent no top-k logprobs for every
    token is an error (every confidence 0 would pass for a confident model)."""
    top = completion.top_logprobs
    if top is None or len(top) != completion.completion_tokens:
        raise EngineError(f"{needed_by} needs top-{k} logprobs for every generated token; "
                          f"the engine returned {'none' if top is None else len(top)} for "
                          f"{completion.completion_tokens} tokens")
    return [token_confidence(t) for t in top]


def lowest_group(confidences: Sequence[float], window: int) -> float:
    """The lowest mean over `window` consecutive tokens (over all of them if fewer)."""
    if not confidences:
        return 0.0
    if len(confidences) <= window:
        return sum(confidences) / len(confidences)
    total = sum(confidences[:window])
    lowest = total
    for i in range(window, len(confidences)):
        total += confidences[i] - confidences[i - window]
        lowest = min(lowest, total)
    return lowest / window


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile, interpolated between the two nearest ranks (numpy's default)."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    below, above = math.floor(rank), math.ceil(rank)
    return ordered[below] + (ordered[above] - ordered[below]) * (rank - below)


class DeepConf:
    def __init__(self, run: SearchRun):
        self.run, self.config = run, run.config
        self.tree = TreeSearch(run)
        self.next_seed = 0  # one per chunk: no two chunks of a search share a seed
        self.started = 0

    def start(self, count: int) -> list[Chain]:
        """count new traces, numbered (their group) in the order they start."""
        first, self.started = self.started, self.started + count
        return [Chain(self.tree.root(group=first + i), thinking=self.run.opened_by_prompt)
                for i in range(count)]

    def grow(self, chains: Sequence[Chain], threshold: float | None = None) -> None:
        """Grow the chains a chunk at a time, all in one engine call per chunk, until each
        has ended or (with a threshold) fallen below it."""
        while live := [chain for chain in chains if chain.open]:
            requests = [self._request(chain) for chain in live]
            completions = self.run.generate(requests)
            for chain, [completion], [thought] in zip(live, completions, self.run.last_thinking,
                                                      strict=True):
                self._extend(chain, completion)
                chain.probes.since += thought
                chain.thinking = inside_thought(self.run, chain.beam.text)
                if threshold is not None:  # the last chunk too: it may end below
                    self._check(chain, threshold)
            self._probe([chain for chain in live if chain.open and chain.thinking])

    def _request(self, chain: Chain) -> GenerationRequest:
        c = self.config
        self.next_seed += 1
        size = min(c.chunk_tokens, c.max_tokens - chain.beam.spent)
        if c.probe_every is not None and chain.thinking:  # a chunk ends where a probe is due
            size = max(1, min(size, c.probe_every - chain.probes.since))
        chain.asked = size
        params = self.run.params(max_tokens=size, seed=self.next_seed, stop=True,
                                 top_logprobs=c.deepconf_top_k)
        return GenerationRequest(chain.beam.token_ids, params, 1)

    def _extend(self, chain: Chain, completion: Completion) -> None:
        confidences = completion_confidences(completion, "deepconf", self.config.deepconf_top_k)
        beam = self.tree.child(chain.beam, completion, "step")
        chain.beam = replace(beam, state=self._state(beam, completion, chain.asked))
        chain.new_tokens = len(confidences)
        chain.confidences += confidences

    def _probe(self, chains: Sequence[Chain]) -> None:
        """Probe the chains due; a settled one ends with its probe as its answer."""
        due = [chain for chain in chains if chain.probes.due(self.config.probe_every)]
        if not due:
            return
        probes = probe(self.run, [(chain.beam.token_ids, chain.beam.node) for chain in due],
                       [chain.probes for chain in due])
        for chain, done in zip(due, probes, strict=True):
            if chain.probes.settled(self.config.probe_agree):
                done.node.status = "finished"
                chain.beam = replace(chain.beam, node=done.node, state="finished",
                                     token_ids=chain.beam.token_ids + done.token_ids,
                                     text=chain.beam.text + done.node.text)

    def _state(self, beam: Beam, completion: Completion, asked: int) -> BeamState:
        """A chunk cut by its size is no truncation: only the trace's budget is, or the
        model's context (fewer tokens came back than were asked for)."""
        if completion.hit_eos or has_boxed_answer(self.run.answer_part(beam.text)):
            return "finished"
        cut_short = (completion.finish_reason == "length"
                     and completion.completion_tokens < asked)
        if beam.spent >= self.config.max_tokens or cut_short:
            return "truncated"
        return "open"

    def _check(self, chain: Chain, threshold: float) -> None:
        """Stop the chain if a full window ending in its newest chunk fell below."""
        window = self.config.deepconf_window
        if len(chain.confidences) < window:
            return
        recent = chain.confidences[-(chain.new_tokens + window - 1):]
        group = lowest_group(recent, window)
        if group < threshold:
            chain.stopped = True
            chain.beam.node.status = "pruned"
            stop = self.run.trace.add(chain.beam.node, "stop",
                                      f"deepconf: group confidence {group:.3f} below the "
                                      f"threshold {threshold:.3f} after "
                                      f"{len(chain.confidences)} tokens")
            stop.agg_score = self.confidence(chain)  # every trace's confidence is stored

    def confidence(self, chain: Chain) -> float:
        return lowest_group(chain.confidences, self.config.deepconf_window)

    def candidates(self, chains: Sequence[Chain]) -> list[Candidate]:
        """Ended traces as candidates, their confidence as score (stopped ones are none)."""
        out = []
        for chain in chains:
            if chain.stopped:
                continue
            self.tree.add_candidate(chain.beam)
            candidate = self.tree.candidates[-1]
            candidate.score = self.confidence(chain)
            out.append(candidate)
        return out


def _leader_share(voters: Sequence[Candidate]) -> float:
    weight: dict[str | None, float] = defaultdict(float)
    for c in voters:
        weight[c.canonical] += c.score or 0.0
    total = sum(weight.values())
    return max(weight.values()) / total if total > 0 else 0.0


def deepconf(problem: Problem, config: SearchConfig, engine: Engine,
             verifier: Verifier) -> SearchResult:
    run = SearchRun(problem, config, engine, verifier)
    search = DeepConf(run)
    if config.deepconf_mode == "offline":
        chains = search.start(config.n)
        search.grow(chains)
        candidates = search.candidates(chains)
        run.read_answers(candidates)
        keep = max(1, math.ceil(len(candidates) * config.deepconf_keep / 100))
        ranked = sorted(candidates, key=lambda c: (-(c.score or 0.0), c.index))
        return _finish(run, candidates, ranked[:keep])
    warmup = search.start(min(config.deepconf_warmup, config.n))
    search.grow(warmup)
    candidates = search.candidates(warmup)
    run.read_answers(candidates)
    threshold = percentile([c.score or 0.0 for c in candidates], 100.0 - config.deepconf_keep)
    voters = [c for c in candidates if (c.score or 0.0) >= threshold]
    started = len(warmup)
    # The consensus is checked as each batch ends (the paper checks as each trace ends).
    while started < config.n:
        batch = search.start(min(len(warmup), config.n - started))
        started += len(batch)
        search.grow(batch, threshold)
        survivors = search.candidates(batch)
        run.read_answers(survivors)
        candidates += survivors
        voters += survivors
        if _leader_share(_finished(voters)) >= CONSENSUS:
            break
    return _finish(run, candidates, voters)


def _finished(candidates: Sequence[Candidate]) -> list[Candidate]:
    return [c for c in candidates if c.finished and c.canonical is not None]


def _finish(run: SearchRun, candidates: list[Candidate], voters: list[Candidate]
            ) -> SearchResult:
    """The confidence-weighted vote of the voters; with none, the most confident ended
    trace (an answer only if it finished)."""
    pool = _finished(voters) or _finished(candidates) or candidates
    weight: dict[str | None, float] = defaultdict(float)
    for c in pool:
        weight[c.canonical] += c.score or 0.0
    best = max(weight, key=lambda answer: (weight[answer], -min(
        c.index for c in pool if c.canonical == answer)))
    chosen = max((c for c in pool if c.canonical == best),
                 key=lambda c: (c.score or 0.0, -c.index))
    chosen.selected = True
    run.trace.nodes[chosen.leaf_id].status = "selected"
    return SearchResult(strategy=run.config.strategy, candidates=candidates,
                        trace=run.trace, selected=chosen.index,
                        generation=run.engine.usage, verification=run.verification,
                        curve={run.config.n: chosen.index},
                        thinking_tokens=run.thinking_tokens)
