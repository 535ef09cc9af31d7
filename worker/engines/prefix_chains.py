"""Group token prompts into chains where each prompt is a prefix of the chain's last one,
so a server can score a whole chain (a candidate's steps) as one sequence."""

from collections.abc import Sequence


def is_prefix(short: Sequence[int], long: Sequence[int]) -> bool:
    return len(short) <= len(long) and tuple(long[: len(short)]) == tuple(short)


def chains(prompts: Sequence[tuple[int, ...]]) -> list[list[int]]:
    """Indices of prompts in chains, shortest first; every index in exactly one chain.
    Sorted order puts a prefix right before the prompts that extend it."""
    groups: list[list[int]] = []
    for i in sorted(range(len(prompts)), key=lambda k: prompts[k]):
        if groups and is_prefix(prompts[groups[-1][-1]], prompts[i]):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups
