"""Reasoning models' format: a thought between think_open and think_close, then the answer.
Only the answer part is graded; thinking tokens are counted apart, cut on token boundaries."""

from collections.abc import Sequence
from dataclasses import dataclass

from ttcq.worker.engines.base import Completion, Engine
from ttcq.worker.search.steps import tokens_through

# Budget forcing closes a thought cut off at its budget with think_close and this cue: the
# model's next tokens are the answer itself, inside the box extract_answer reads first.
ANSWER_CUE = "\n\nFinal answer: \\boxed{"
# The answer after a forced close is the box's contents: a few tokens are enough.
FORCED_ANSWER_TOKENS = 16


@dataclass(frozen=True)
class Reasoned:
    thought: str | None  # None: no thought at all
    answer: str  # "" for a thought cut off before its close


def split_reasoning(text: str, think_open: str, think_close: str,
                    opened_by_prompt: bool = False) -> Reasoned:
    """Thought and answer of a completion. Text up to the first think_close is thought
    (the prompt may have opened it, as reasoning chat templates do); a thought that never
    closes has no answer; text without tags is all answer."""
    close = text.find(think_close)
    if close >= 0:
        end = close + len(think_close)
        return Reasoned(text[:end], text[end:])
    if opened_by_prompt or think_open in text:
        return Reasoned(text, "")
    return Reasoned(None, text)


def opens_thought(engine: Engine, prompt_ids: Sequence[int], think_open: str) -> bool:
    """Whether the prompt ends inside an open thought (a template that starts the
    assistant's turn with think_open): then the completion starts as thought."""
    # Only the tail is read: a token holds at least one character of text here.
    tail = engine.detokenize(prompt_ids[-(len(think_open) + 4):])
    return tail.rstrip().endswith(think_open)


def tokens_before_close(engine: Engine, completion: Completion, think_close: str) -> int:
    """Tokens of a completion strictly before the token where think_close starts."""
    start = completion.text.find(think_close)
    return max(0, tokens_through(engine, completion.token_ids, start + 1) - 1)


def thought_open_after(reply: str, think_open: str, think_close: str,
                       opened_by_prompt: bool) -> bool | None:
    """Where a reply so far stands: inside its thought (True), before any (False), or past
    its close (None: what follows is answer, as split_reasoning reads it)."""
    if think_close in reply:
        return None
    return opened_by_prompt or think_open in reply


def thinking_tokens(engine: Engine, completion: Completion, think_open: str,
                    think_close: str, opened_by_prompt: bool, reply: str = "") -> int:
    """Generated tokens of a completion that lie in its thought: up to the token that
    ends think_close, or all of them for a thought that never closes. reply: the reply
    the completion continues (its thought may be open, a tag may have begun there)."""
    inside = thought_open_after(reply, think_open, think_close, opened_by_prompt)
    if inside is None:
        return 0
    # A tag cut between two calls (DeepConf's chunks) is found across the cut.
    keep = max(len(think_open), len(think_close)) - 1
    tail = reply[max(0, len(reply) - keep):] if keep else ""
    text = tail + completion.text
    parts = split_reasoning(text, think_open, think_close, inside)
    if parts.thought is None:
        return 0
    if think_close not in text:
        return completion.completion_tokens  # cut off (end-of-sequence token included)
    return tokens_through(engine, completion.token_ids, len(parts.thought) - len(tail))
