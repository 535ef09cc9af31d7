"""Cutting a generated solution into steps at the delimiter, on token boundaries, so that
each step node carries the exact number of tokens the engine generated for it."""

from collections.abc import Sequence

from ttcq.worker.engines.base import Engine


def tokens_through(engine: Engine, ids: Sequence[int], chars: int) -> int:
    """Fewest leading tokens whose text is at least `chars` characters long."""
    lo, hi = 0, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if len(engine.detokenize(ids[:mid])) >= chars:
            hi = mid
        else:
            lo = mid + 1
    return lo


def split_steps(
    engine: Engine, token_ids: Sequence[int], text: str, delimiter: str
) -> list[tuple[str, int]]:
    """(step text, token count) pairs covering all of text and all of token_ids. A step
    ends with its delimiter; a cut falls after the token that completes the delimiter."""
    steps: list[tuple[str, int]] = []
    start_char, start_tok = 0, 0
    search_from = 0
    while True:
        found = text.find(delimiter, search_from)
        if found < 0:
            break
        end_char = found + len(delimiter)
        search_from = end_char
        if not text[start_char:found].strip():
            continue  # a blank run: keep it with the next step
        end_tok = max(tokens_through(engine, token_ids, end_char), start_tok + 1)
        if end_tok >= len(token_ids):
            break
        end_char = len(engine.detokenize(token_ids[:end_tok]))
        steps.append((text[start_char:end_char], end_tok - start_tok))
        start_char, start_tok = end_char, end_tok
        search_from = max(search_from, end_char)
    if start_char < len(text) or start_tok < len(token_ids) or not steps:
        steps.append((text[start_char:], len(token_ids) - start_tok))
    return steps
