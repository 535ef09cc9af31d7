"""What every strategy shares: the prompt, metered engine calls, the trace, verifier
calls with their cost, and turning candidates into a result."""

from collections.abc import Sequence

from ttcq.worker.engines.base import Completion, Engine, GenerationRequest, SamplingParams, Usage
from ttcq.worker.engines.metered import MeteredEngine
from ttcq.worker.search.answers import canonical_answer, extract_answer
from ttcq.worker.search.config import SearchConfig
from ttcq.worker.search.scoring import aggregate, budget_curve, select
from ttcq.worker.search.thinking import (
    opens_thought,
    split_reasoning,
    thinking_tokens,
)
from ttcq.worker.search.types import Candidate, Problem, SearchResult, Trace, TraceNode
from ttcq.worker.verifiers.base import Verifier


class SearchRun:
    def __init__(self, problem: Problem, config: SearchConfig, engine: Engine, verifier: Verifier):
        self.problem = problem
        self.config = config
        # A fresh meter per search, so its usage is exactly this search's generation.
        self.engine = MeteredEngine(engine)
        self.engine.reset()
        self.verifier = verifier
        self.verification = Usage()
        self.trace = Trace()
        self.root = self.trace.add(None, "prompt", problem.text)
        self.other_chats: set[tuple[int, ...]] = set()  # chats after the first (self-refine)
        self.prompt_ids = tuple(self.chat([problem.text]))
        self.other_chats.clear()
        self.opened_by_prompt = opens_thought(self.engine, self.prompt_ids, config.think_open)
        self.thinking_tokens = 0  # generated tokens inside thoughts, counted by generate
        self.last_thinking: list[list[int]] = []  # of the latest call, per completion

    def chat(self, user_turns: Sequence[str], assistant_turns: Sequence[str] = ()) -> list[int]:
        """Token ids of the system prompt, alternating user/assistant turns, reply start."""
        messages = [{"role": "system", "content": self.config.system_prompt}]
        for i, user in enumerate(user_turns):
            messages.append({"role": "user", "content": user})
            if i < len(assistant_turns):
                messages.append({"role": "assistant", "content": assistant_turns[i]})
        ids = self.engine.chat_prompt(messages, self.config.chat_template_kwargs or None)
        self.other_chats.add(tuple(ids))
        return ids

    def params(
        self, *, max_tokens: int, seed: int, stop: bool = False, greedy: bool = False,
        top_logprobs: int = 0,
    ) -> SamplingParams:
        c = self.config
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=0.0 if greedy else c.temperature,
            top_p=c.top_p,
            top_k=c.top_k,
            stop=(c.step_delimiter,) if stop else (),
            seed=c.seed + seed,
            top_logprobs=top_logprobs,
        )

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        """The engine's completions; their tokens inside thoughts are counted here, so every
        strategy counts them the same way."""
        results = self.engine.generate(requests)
        c = self.config
        self.last_thinking = []
        for request, completions in zip(requests, results, strict=True):
            opened, reply = self._reply_of(request.prompt_ids)
            self.last_thinking.append([thinking_tokens(
                self.engine, completion, c.think_open, c.think_close, opened, reply)
                for completion in completions])
        self.thinking_tokens += sum(map(sum, self.last_thinking))
        return results

    def _reply_of(self, prompt_ids: Sequence[int]) -> tuple[bool, str]:
        """Whether a prompt's reply was opened as a thought by the template, and its text
        so far: a continuation of this run's prompt reads the whole reply (a thought's
        close may lie anywhere in it), another chat (self-refine's turns) only its end."""
        base = len(self.prompt_ids)
        # A chat of its own may start with the first one's ids (ChatML): it is no reply.
        if tuple(prompt_ids) in self.other_chats or tuple(prompt_ids[:base]) != self.prompt_ids:
            return opens_thought(self.engine, prompt_ids, self.config.think_open), ""
        return self.opened_by_prompt, self.engine.detokenize(prompt_ids[base:])

    def score(
        self, paths: Sequence[Sequence[str]], *, last_only: bool = False
    ) -> list[list[float]]:
        """Step scores from the verifier; its tokens are counted as verification."""
        if not paths:
            return []
        out = self.verifier.score(self.problem.text, paths, last_only=last_only)
        self.verification.add(out.usage)
        return out.scores

    def steps_of(self, node: TraceNode) -> list[str]:
        """Step texts on the path from the root to node (prompt excluded)."""
        return [n.text for n in self.trace.path(node)]

    def finish(self, candidates: list[Candidate], *, group_size: int = 1) -> SearchResult:
        """Extract answers, aggregate scores, pick the final candidate, read the curve."""
        self.read_answers(candidates)
        method = self.config.final_selection
        chosen = select(candidates, method)
        candidates[chosen].selected = True
        self.trace.nodes[candidates[chosen].leaf_id].status = "selected"
        group_n = max(c.group for c in candidates) + 1
        return SearchResult(
            strategy=self.config.strategy,
            candidates=candidates,
            trace=self.trace,
            selected=chosen,
            generation=self.engine.usage,
            verification=self.verification,
            curve=budget_curve(candidates, method, group_n * group_size, group_size),
            thinking_tokens=self.thinking_tokens,
        )

    def answer_part(self, text: str) -> str:
        """What is graded: the text after the thought (all of it without one)."""
        c = self.config
        return split_reasoning(text, c.think_open, c.think_close, self.opened_by_prompt).answer

    def read_answers(self, candidates: list[Candidate]) -> None:
        """Each candidate's answer, its canonical form (finished ones only) and score."""
        for c in candidates:
            extracted = extract_answer(self.answer_part(c.text))
            c.answer, c.extraction = extracted.answer, extracted.method
            c.canonical = canonical_answer(c.answer) if c.finished else None
            if c.step_scores:
                c.score = aggregate(c.step_scores, self.config.aggregation)
