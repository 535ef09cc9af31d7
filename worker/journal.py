"""A search's journal: every engine and verifier call it makes, in order, with what came
back. It is the search's checkpoint.

A strategy is a plain function whose only inputs beyond its problem and config are the
answers of its engine and verifier calls (its random generator is seeded from the
config). So a search that is given its recorded answers back, in order, walks the same
path to the same state — the tree, its scores, the candidates, the costs and the random
state — without a single engine call, and goes on from there for real. That is how a job
resumes: no strategy needs to know how to save itself, every strategy can resume, and the
resumed result is the uninterrupted one wherever the engine repeats itself for a seed.

Each live call first saves what is not saved yet (the calls since the last save: a step
boundary), then asks the guard whether to go on (the lease: cancelled, handed to another
worker, yield for a drain). A save names the call about to start, so that a job lost
while it ran knows which call was lost with it.

Should a resumed search ask for something other than what was recorded (a config read
anew, a new code version), it goes live from that point: the records not replayed are
dropped, and their tokens counted as wasted."""

import hashlib
import json
import time
import zlib
from array import array
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ttcq.worker.engines.base import Completion, Engine, GenerationRequest, Usage, usage_of
from ttcq.worker.engines.wrapper import EngineWrapper
from ttcq.worker.search.deepconf import token_confidence
from ttcq.worker.verifiers.base import Verifier, VerifierOutput

CallKind = Literal["generate", "score"]
# As lost_call: the first live call, whatever it is (a search lost before its first save
# starts again from nothing, with the same request as before).
FIRST_CALL = "first"


@dataclass(frozen=True)
class Call:
    """One engine or verifier call: what was asked (as a digest), what came back, and how
    long it took."""

    kind: CallKind
    key: str
    result: Any  # list[list[Completion]] for generate, VerifierOutput for score
    seconds: float

    def usage(self) -> Usage:
        if self.kind == "score":
            return self.result.usage
        return usage_of([c for samples in self.result for c in samples])


# Saves the calls not yet saved, the index of the first of them (0: replace whatever is
# stored), and the key of the call about to start. Raises if the job is no longer ours.
Save = Callable[[list[Call], int, str], None]


@dataclass
class Journal:
    recorded: list[Call] = field(default_factory=list)
    save: Save | None = None
    guard: Callable[[], None] | None = None
    # The key of the call that was running when the previous attempt was lost: when the
    # resumed search makes the same call, its cost is the lost call's (counted as wasted).
    lost_call: str | None = None
    replayed: int = 0
    replayed_seconds: float = 0.0  # generate calls' (a verifier's usage has its own)
    wasted: Usage = field(default_factory=Usage)
    saves: int = 0  # checkpoints written by this attempt: its progress
    made: list[CallKind] = field(default_factory=list)  # this attempt's live calls
    _unsaved: list[Call] = field(default_factory=list)
    _saved: int = 0  # calls [0, _saved) are in the checkpoint

    def __post_init__(self) -> None:
        self._saved = len(self.recorded)

    def engine(self, inner: Engine) -> Engine:
        return JournalEngine(self, inner)

    def verifier(self, inner: Verifier) -> Verifier:
        return JournalVerifier(self, inner)

    def call(self, kind: CallKind, key: str, make: Callable[[], Any]) -> Any:
        """The recorded answer of the next call if it is this one, or a live call."""
        if self.replayed < len(self.recorded):
            record = self.recorded[self.replayed]
            if (record.kind, record.key) == (kind, key):
                self.replayed += 1
                self.replayed_seconds += record.seconds if kind == "generate" else 0.0
                return record.result
            self._diverge()
        self._before_live(key)
        start = time.perf_counter()
        result = make()
        call = Call(kind, key, result, time.perf_counter() - start)
        if self.lost_call in (key, FIRST_CALL):
            self.wasted.add(call.usage())
        self.lost_call = None  # only the first live call can be the lost one
        self._unsaved.append(call)
        self.made.append(kind)
        return result

    def _diverge(self) -> None:
        """The search asked for something else: what was recorded from here on is of no
        use (its cost was paid for nothing), and the checkpoint is written anew from the
        start (a save at index 0 replaces what is stored)."""
        for record in self.recorded[self.replayed:]:
            self.wasted.add(record.usage())
        self.recorded = self.recorded[: self.replayed]
        self._unsaved = list(self.recorded)
        self._saved = 0
        self.lost_call = None

    def _before_live(self, key: str) -> None:
        if self.save is not None and self._unsaved:
            self.save(self._unsaved, self._saved, key)
            self._saved += len(self._unsaved)
            self._unsaved = []
            self.saves += 1
        if self.guard is not None:
            self.guard()


class JournalEngine(EngineWrapper):
    def __init__(self, journal: Journal, inner: Engine):
        super().__init__(inner)
        self.journal = journal

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        result: list[list[Completion]] = self.journal.call(
            "generate", generate_key(requests), lambda: self.inner.generate(requests))
        return result


class JournalVerifier:
    def __init__(self, journal: Journal, inner: Verifier):
        self.journal, self.inner, self.name = journal, inner, inner.name

    def score(
        self, question: str, candidates: Sequence[Sequence[str]], *, last_only: bool = False
    ) -> VerifierOutput:
        key = score_key(question, candidates, last_only)
        result: VerifierOutput = self.journal.call(
            "score", key,
            lambda: self.inner.score(question, candidates, last_only=last_only))
        return result


def generate_key(requests: Sequence[GenerationRequest]) -> str:
    """A digest of what a generate call asks: every prompt's ids, its sampling and n."""
    digest = hashlib.blake2b(b"generate", digest_size=12)
    for request in requests:
        digest.update(array("q", request.prompt_ids).tobytes())
        digest.update(repr((request.params, request.n)).encode())
    return digest.hexdigest()


def score_key(question: str, candidates: Sequence[Sequence[str]], last_only: bool) -> str:
    digest = hashlib.blake2b(f"score {last_only} {question}".encode(), digest_size=12)
    for steps in candidates:
        digest.update(b"\x00candidate")
        for step in steps:
            digest.update(b"\x00" + step.encode())
    return digest.hexdigest()


# The stored form of calls: JSON, compressed (token ids and step texts compress well).

def encode_calls(calls: Sequence[Call]) -> bytes:
    return zlib.compress(json.dumps([_call_json(c) for c in calls]).encode(), level=1)


def decode_calls(blob: bytes) -> list[Call]:
    return [_call_of(item) for item in json.loads(zlib.decompress(blob))]


def _call_json(call: Call) -> dict[str, Any]:
    if call.kind == "score":
        result: Any = {"scores": call.result.scores, "usage": asdict(call.result.usage)}
    else:
        result = [[_completion_json(c) for c in samples] for samples in call.result]
    return {"kind": call.kind, "key": call.key, "seconds": call.seconds, "result": result}


def _completion_json(completion: Completion) -> dict[str, Any]:
    """A completion as saved. Searches read top-k logprobs only through their token
    confidence (worker.search.deepconf), so a token's k logprobs are kept as the one
    logprob with the same confidence: a checkpoint of a long trace holds one number a
    token, not k."""
    data = asdict(completion)
    if completion.top_logprobs is not None:
        data["top_logprobs"] = [[-token_confidence(top)] if top else []
                                for top in completion.top_logprobs]
    return data


def _call_of(item: dict[str, Any]) -> Call:
    if item["kind"] == "score":
        raw = item["result"]
        result: Any = VerifierOutput(raw["scores"], Usage(**raw["usage"]))
    else:
        result = [[Completion(**c) for c in samples] for samples in item["result"]]
    return Call(item["kind"], item["key"], result, item["seconds"])
