"""Print the CMake arguments that build llama.cpp for this CPU, on one line.

x86-64: every SIMD extension the CPU has (AVX2, AVX-512 and its VNNI/BF16/VBMI kinds, ...)
is switched on explicitly and -march=native is off, because native builds on CPUs with AMX
compile ggml's AMX kernels, which crash at the first decode on Sapphire Rapids-class CPUs
(llama.cpp #20824). AMX stays off whatever the CPU says. Elsewhere: a native build.
Run with the system python: it imports nothing outside the standard library."""

import platform
import sys
from pathlib import Path

# ggml option -> the /proc/cpuinfo flags it needs (all of them).
X86_OPTIONS = {
    "GGML_SSE42": ("sse4_2",),
    "GGML_AVX": ("avx",),
    "GGML_AVX2": ("avx2",),
    "GGML_FMA": ("fma",),
    "GGML_F16C": ("f16c",),
    "GGML_BMI2": ("bmi2",),
    "GGML_AVX_VNNI": ("avx_vnni",),
    "GGML_AVX512": ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"),
    "GGML_AVX512_VBMI": ("avx512f", "avx512vbmi"),
    "GGML_AVX512_VNNI": ("avx512f", "avx512_vnni"),
    "GGML_AVX512_BF16": ("avx512f", "avx512_bf16"),
}
NEVER = ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")


def cpu_flags(cpuinfo: str) -> set[str]:
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def cmake_args(machine: str, flags: set[str]) -> list[str]:
    if machine not in ("x86_64", "AMD64"):
        return ["-DGGML_NATIVE=ON"]
    args = ["-DGGML_NATIVE=OFF"]
    for option, needs in X86_OPTIONS.items():
        args.append(f"-D{option}={'ON' if all(f in flags for f in needs) else 'OFF'}")
    args += [f"-D{option}=OFF" for option in NEVER]
    return args


def main() -> None:
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpu_flags(cpuinfo.read_text()) if cpuinfo.exists() else set()
    sys.stdout.write(" ".join(cmake_args(platform.machine(), flags)) + "\n")


if __name__ == "__main__":
    main()
