"""Print a package's declared requirements for this platform, minus the named ones.

    python cpu_requirements.py PACKAGE [EXCLUDED ...]

Run inside the venv where PACKAGE is installed (with --no-deps): its metadata lists what it
needs; extras and requirements whose markers do not match this machine are left out."""

import sys
from importlib.metadata import requires

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def cpu_requirements(package: str, excluded: set[str]) -> list[str]:
    wanted = []
    for line in requires(package) or []:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        if canonicalize_name(req.name) in excluded:
            continue
        wanted.append(str(req))
    return wanted


if __name__ == "__main__":
    skip = {canonicalize_name(name) for name in sys.argv[2:]}
    sys.stdout.write("\n".join(cpu_requirements(sys.argv[1], skip)) + "\n")
