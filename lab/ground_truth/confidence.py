"""The ground-truth engine's token confidence: what DeepConf reads from a real model's top-k
logprobs, with a level set by whether the trace is still sound.

A token of step j has confidence `sound` while the trace is sound after step j, `unsound`
once it is not, plus the trace's own offset (a normal draw of sd `spread`, fixed by the
nonce of the trace's first step, so every chunk of a trace agrees); never below 0. The
step separator and the end of the sequence belong to the step they close. So a trace's
lowest group confidence over a window no longer than a step is `sound + offset` if the
whole trace is sound, else `unsound + offset`: sound and unsound traces overlap as two
normals `sound - unsound` apart, and every token's top-k logprobs are minus its level."""

import random
from dataclasses import dataclass

from lab.ground_truth.task import SOUND, STEP

STEP_END = 2  # "\\n\\n" after a step, or EOS (1 token) after the last


@dataclass(frozen=True)
class Confidence:
    sound: float = 2.0
    unsound: float = 1.0
    spread: float = 0.4

    def offset(self, nonce: int) -> float:
        return random.Random(nonce).gauss(0.0, self.spread)

    def level(self, sound: bool, nonce: int) -> float:
        return max(0.0, (self.sound if sound else self.unsound) + self.offset(nonce))

    def stream(self, reply: str, continuation: str) -> list[float]:
        """The confidence of each character (token) of continuation, written after reply,
        and of the end of the sequence after it."""
        steps = list(STEP.finditer(reply + continuation))
        if not steps:
            return [self.level(True, 0)] * (len(continuation) + 1)
        nonce = int(steps[0]["nonce"], 16)
        ends = [m.end() + STEP_END for m in steps]  # where each step's tokens end
        levels = [self.level(m["label"] == SOUND, nonce) for m in steps]
        out, step = [], 0
        for position in range(len(reply), len(reply) + len(continuation) + 1):
            while step < len(steps) - 1 and position >= ends[step]:
                step += 1
            out.append(levels[step])
        return out
