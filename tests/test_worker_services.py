"""scripts/services.sh, which starts the Postgres and Redis the worker needs."""

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "services.sh"


def test_services_script_names_missing_packages_and_fails(tmp_path: Path) -> None:
    done = subprocess.run(
        ["/bin/bash", str(SCRIPT)], env={"PATH": str(tmp_path)}, capture_output=True,
        text=True, check=False,
    )
    assert done.returncode == 1
    assert "pg_ctlcluster" in done.stderr and "redis-server" in done.stderr


def test_services_script_leaves_running_services_alone() -> None:
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "postgres (127.0.0.1:5432): up" in done.stdout
