"""The embedded engine's build: CPU-specific flags, never AMX, a self-check that turns a
native crash into one line, and thread counts that follow the free cores."""

import importlib.util
import platform
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from ttcq.worker.engines.base import GenerationRequest, SamplingParams
from ttcq.worker.engines.llamacpp import LlamaCppEngine, build_features, describe_build
from ttcq.worker.engines.selfcheck import explain

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import llama_build_flags as flags  # noqa: E402

SAPPHIRE_RAPIDS = {"sse4_2", "avx", "avx2", "fma", "f16c", "bmi2", "avx_vnni", "avx512f",
                   "avx512cd", "avx512vl", "avx512dq", "avx512bw", "avx512_vnni",
                   "avx512_bf16", "avx512vbmi", "amx_tile", "amx_int8", "amx_bf16"}
HASWELL = {"sse4_2", "avx", "avx2", "fma", "f16c", "bmi2"}


def options(args: list[str]) -> dict[str, str]:
    return dict(a.removeprefix("-D").split("=") for a in args)


def test_an_amx_cpu_gets_avx512_kernels_and_never_amx() -> None:
    got = options(flags.cmake_args("x86_64", SAPPHIRE_RAPIDS))
    assert got["GGML_NATIVE"] == "OFF"  # native would compile the AMX kernels
    assert got["GGML_AVX512"] == got["GGML_AVX512_VNNI"] == got["GGML_AVX2"] == "ON"
    assert got["GGML_AMX_TILE"] == got["GGML_AMX_INT8"] == got["GGML_AMX_BF16"] == "OFF"


def test_a_cpu_without_avx512_gets_no_avx512() -> None:
    got = options(flags.cmake_args("x86_64", HASWELL))
    assert got["GGML_AVX2"] == got["GGML_FMA"] == "ON"
    assert got["GGML_AVX512"] == got["GGML_AVX512_VNNI"] == got["GGML_AVX_VNNI"] == "OFF"


def test_other_architectures_build_native() -> None:
    assert flags.cmake_args("aarch64", set()) == ["-DGGML_NATIVE=ON"]


def test_cpu_flags_are_read_from_cpuinfo() -> None:
    text = "processor\t: 0\nflags\t\t: fpu avx2 amx_tile\nbugs\t\t: spectre\n"
    assert flags.cpu_flags(text) == {"fpu", "avx2", "amx_tile"}


def test_the_installed_build_matches_this_cpu_and_has_no_amx() -> None:
    features = set(build_features())
    assert not {f for f in features if "AMX" in f}
    cpu = flags.cpu_flags(Path("/proc/cpuinfo").read_text())
    if "avx2" in cpu:
        assert "AVX2" in features
    if {"avx512f", "avx512bw"} <= cpu:
        assert "AVX512" in features
    assert "no AMX" in describe_build(None) and "AVX" in describe_build(2)


def test_the_cpu_library_holds_no_amx_instruction() -> None:
    spec = importlib.util.find_spec("llama_cpp")
    assert spec is not None and spec.origin is not None
    library = Path(spec.origin).parent / "lib" / "libggml-cpu.so"
    objdump = shutil.which("objdump")
    assert objdump, "objdump (binutils) is needed to inspect the build"
    listing = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(library)],
                             capture_output=True, text=True, check=True).stdout
    assert "vfmadd" in listing  # the disassembly is real...
    assert not any(op in listing for op in ("tileloadd", "tdpbssd", "ldtilecfg"))  # ...no AMX


def test_the_self_check_runs_a_real_generation() -> None:
    done = subprocess.run([sys.executable, "-m", "ttcq.worker.engines.selfcheck"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("engine check: a real generation ran; engine: llama.cpp")


def test_a_crash_is_explained_in_one_line_with_the_fix() -> None:
    line = explain(-signal.SIGSEGV, "")
    assert "SIGSEGV" in line and "AMX" in line and "scripts/install.sh" in line
    assert "\n" not in line
    assert "instructions this CPU lacks" in explain(-signal.SIGILL, "")
    assert explain(1, "Traceback\nImportError: no llama").endswith("ImportError: no llama")


class OneCore:
    def threads(self) -> int:
        return 1


def test_the_pool_follows_the_governor_between_forward_passes(engine: LlamaCppEngine) -> None:
    pool = engine.pool
    governor = pool._governor
    assert governor is not None  # no fixed count: governed
    prompt = tuple(engine.chat_prompt([{"role": "user", "content": "Count to five."}]))
    request = GenerationRequest(prompt, SamplingParams(max_tokens=12, temperature=0.0))
    try:
        pool._governor = OneCore()  # type: ignore[assignment]
        (completion,) = engine.generate([request])[0]
        assert pool.n_threads == 1 and len(completion.token_ids) == 12
    finally:
        pool._governor = governor  # the next forward pass sets the count it answers


def test_a_fixed_thread_count_is_not_governed() -> None:
    fixed = LlamaCppEngine(n_ctx=512, n_threads=1)
    assert fixed.pool._governor is None and fixed.pool.n_threads == 1


def test_the_flags_script_prints_one_line_without_amx() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "llama_build_flags.py")],
                         capture_output=True, text=True, check=True).stdout
    assert out.count("\n") == 1
    if platform.machine() == "x86_64":
        assert all(f"-D{option}=OFF" in out for option in flags.NEVER)
