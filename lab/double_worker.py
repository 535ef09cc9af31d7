"""A real Celery worker process (`python -m lab.double_worker`) whose engine is a
TEST DOUBLE: the ground-truth engine held for a fixed latency per call, as a GPU server
with spare batch capacity answers (every call takes about the same time, whatever its
batch). It runs as `ttcq worker` does on a served engine: a thread pool of searches in
flight, the engine watch, the drain, the reaper; crash and preemption tests kill it.

A problem whose text holds POISON kills the process at its first engine call (SIGKILL
to itself, as a segfault in native code would), every time it runs.

    TTCQ_DATABASE_URL=... TTCQ_REDIS_URL=... python -m lab.double_worker \\
        --concurrency 32 --latency 0.2"""

import argparse
import logging
import os
import signal
import socket
import time
from collections.abc import Sequence

from lab.ground_truth.engine import GroundTruthEngine
from ttcq.worker.engines.base import Completion, GenerationRequest, TokenLogprobs

POISON = "POISON"


class LatencyBoundEngine(GroundTruthEngine):
    """TEST DOUBLE: the ground-truth engine, each call held for `latency` seconds. With a
    ledger path, every call appends the tokens it processed (prompt, cached ones
    included, and completion) as a line, as it starts: a server's counters would count a
    call whose client was killed while it ran too."""

    def __init__(self, latency: float, ledger: str = ""):
        super().__init__()
        self.latency, self.ledger = latency, ledger

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        if any(POISON in self.detokenize(r.prompt_ids) for r in requests):
            os.kill(os.getpid(), signal.SIGKILL)
        out = super().generate(requests)
        self._count(sum(c.prompt_tokens + c.completion_tokens for s in out for c in s))
        time.sleep(self.latency)
        return out

    def next_token_logprobs(self, prompts: Sequence[Sequence[int]],
                            token_ids: Sequence[int]) -> list[TokenLogprobs]:
        out = super().next_token_logprobs(prompts, token_ids)
        self._count(sum(r.prompt_tokens + r.completion_tokens for r in out))
        time.sleep(self.latency)
        return out

    def _count(self, tokens: int) -> None:
        if self.ledger:
            with open(self.ledger, "a") as ledger:
                ledger.write(f"{tokens}\n")


def main() -> None:
    from ttcq.settings import get_settings
    from ttcq.worker.main import LOG_FORMAT, create_worker_app

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--ledger", default="", help="a file to count processed tokens in")
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format=LOG_FORMAT)
    # A served engine's settings: the thread pool and the engine watch, as in production.
    settings = get_settings().model_copy(update={"engine": "sglang",
                                                 "engine_url": "http://double.invalid"})
    engine = LatencyBoundEngine(args.latency, args.ledger)
    app = create_worker_app(settings, engine_factory=lambda: engine)
    worker = app.Worker(hostname=f"ttcq{os.getpid()}@{socket.gethostname()}",
                        concurrency=args.concurrency, pool_cls="threads", loglevel="INFO",
                        without_gossip=True, without_mingle=True)
    worker.start()


if __name__ == "__main__":
    main()
