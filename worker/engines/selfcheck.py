"""`python -m worker.engines.selfcheck`: prove the embedded engine runs on this machine.

The generation runs in a child process, so that a crash of the native code (a build for
another CPU, ggml's AMX kernels) is reported as one line with what to do, instead of a
bare "Segmentation fault" in the middle of a demo or a test run."""

import signal
import subprocess
import sys

REBUILD = ("rebuild it for this CPU: rm -f .venv/llama-build-key && bash scripts/install.sh "
           "(or pick flags: TTCQ_LLAMA_CMAKE_ARGS='-DGGML_NATIVE=OFF -DGGML_AVX2=ON')")
CAUSES = {
    signal.SIGILL: "llama.cpp was built for instructions this CPU lacks",
    signal.SIGSEGV: "llama.cpp crashed in its CPU kernels (AMX builds do on some Intel CPUs)",
    signal.SIGBUS: "llama.cpp crashed in its CPU kernels",
}


def generate_once() -> str:
    """A short greedy generation with the shipped model; the build's description."""
    from ttcq.worker.engines.base import GenerationRequest, SamplingParams
    from ttcq.worker.engines.llamacpp import LlamaCppEngine, describe_build

    engine = LlamaCppEngine(n_ctx=512)
    prompt = engine.chat_prompt([{"role": "user", "content": "What is 2 + 2?"}])
    request = GenerationRequest(tuple(prompt), SamplingParams(max_tokens=8, temperature=0.0))
    (completion,) = engine.generate([request])[0]
    if not completion.token_ids:
        raise RuntimeError("the test generation returned no tokens")
    return describe_build(None)


def explain(returncode: int, stderr: str) -> str:
    """One line on why the child failed, and what to do."""
    if returncode < 0:
        sig = signal.Signals(-returncode)
        cause = CAUSES.get(sig, "llama.cpp was killed")
        return f"engine check: {sig.name} in a test generation: {cause}; {REBUILD}"
    last = (stderr.strip().splitlines() or ["no message"])[-1]
    return f"engine check: the test generation failed: {last}"


def main() -> int:
    if sys.argv[1:] == ["--child"]:
        sys.stdout.write(generate_once() + "\n")
        return 0
    child = subprocess.run([sys.executable, "-m", "ttcq.worker.engines.selfcheck", "--child"],
                           capture_output=True, text=True)
    if child.returncode == 0:
        sys.stdout.write("engine check: a real generation ran; " + child.stdout)
        return 0
    sys.stderr.write(child.stderr)
    sys.stdout.write(explain(child.returncode, child.stderr) + "\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
