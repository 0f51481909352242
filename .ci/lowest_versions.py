"""Install the lowest versions pyproject.toml allows, then import every module of mailer.

pip has no "lowest" resolution, so each direct dependency's ``>=`` floor in
``[project].dependencies`` becomes an ``==`` pin. The pins go into a virtual
environment of their own and every module of the package is imported there,
from the source tree, so code that uses a newer API than the floor allows
fails here instead of on a user's machine.

The environment is kept between runs under ``.venv/lowest-versions/``, one per
set of pins and interpreter, so a second run installs nothing. Each run
checks that the installed version of every pinned package is its floor before
importing; when a kept environment fails either check it is built again from
scratch and checked once more, so a stale environment cannot fail the check
and cannot pass it with other versions.

    python .ci/lowest_versions.py          # check; exit status 1 on failure
    python .ci/lowest_versions.py --pins   # print the pins only
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
KEPT = REPO / ".venv" / "lowest-versions"  # removed by `make clean` with the rest of .venv
# Loaded by Alembic with its context set up, not importable on their own.
NOT_IMPORTED = ("mailer.store.migrations", "mailer.__main__")  # and this one runs the CLI
IMPORT_ALL = f"""
import importlib, importlib.metadata, json, pkgutil, sys
installed = {{name: importlib.metadata.version(name) for name in sys.argv[1:]}}
print(json.dumps(installed))
import mailer
skip = {NOT_IMPORTED!r}
for module in pkgutil.walk_packages(mailer.__path__, "mailer."):
    if not module.name.startswith(skip):
        importlib.import_module(module.name)
print("imported every module of mailer")
"""


def lowest_pins(pyproject: str) -> list[str]:
    """``name[extras]==floor`` for each direct dependency; ValueError names one without a
    ``>=`` floor."""
    pins = []
    for text in tomllib.loads(pyproject)["project"]["dependencies"]:
        requirement = Requirement(text)
        floors = [s.version for s in requirement.specifier if s.operator == ">="]
        if len(floors) != 1:
            raise ValueError(f"dependency {text!r} needs exactly one '>=' floor")
        extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
        marker = f"; {requirement.marker}" if requirement.marker else ""
        pins.append(f"{requirement.name}{extras}=={floors[0]}{marker}")
    return pins


def floors(pins: list[str]) -> dict[str, Version]:
    """Each pinned distribution's name and the version it is pinned to."""
    found = {}
    for pin in pins:
        requirement = Requirement(pin)
        (spec,) = requirement.specifier
        found[requirement.name] = Version(spec.version)
    return found


def build(venv: Path, pins: list[str]) -> bool:
    """A virtual environment at ``venv`` with the pins installed; False when pip fails."""
    # No pip inside: this interpreter's pip installs into it (--python), which saves
    # seconds, as skipping the byte-compiling does.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
    return subprocess.run([*pip, "install", "--quiet", "--no-compile", *pins]).returncode == 0


def kept_venv(pins: list[str]) -> Path:
    """Where the environment for these pins and this interpreter is kept between runs."""
    key = "\n".join([sys.version, sys.executable, *pins])
    return KEPT / hashlib.sha256(key.encode()).hexdigest()[:16]


def keep(pins: list[str]) -> Path | None:
    """The kept environment for the pins, built now when there is none; None when pip fails."""
    venv = kept_venv(pins)
    if (venv / "bin" / "python").exists():
        return venv
    KEPT.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix="building-", dir=KEPT))
    try:
        if not build(building / "venv", pins):
            return None
        # Built aside and moved when complete, so a build cut short is never kept (only
        # bin/python is used, which finds its environment wherever it is). Another run
        # may have kept the same one meanwhile; either is as good.
        with contextlib.suppress(OSError):
            (building / "venv").rename(venv)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return venv if (venv / "bin" / "python").exists() else None


def imports_at_the_floors(venv: Path, pins: list[str]) -> tuple[bool, str]:
    """Import every module of mailer in ``venv`` after checking its versions; (passed, why not)."""
    wanted = floors(pins)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", IMPORT_ALL, *wanted],
        cwd=venv,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    sys.stderr.write(done.stderr)
    lines = done.stdout.splitlines()
    try:
        installed = {name: Version(v) for name, v in json.loads(lines[0]).items()}
    except (IndexError, ValueError):
        return False, "could not read the installed versions"
    other = {n: str(v) for n, v in installed.items() if v != wanted[n]}
    if other:
        return False, f"installed versions are not the floors: {other}"
    print(*lines[1:], sep="\n")
    if done.returncode != 0:
        return False, "mailer does not import"
    return True, ""


def check(pins: list[str]) -> int:
    venv = kept_venv(pins)
    if (venv / "bin" / "python").exists():
        passed, why = imports_at_the_floors(venv, pins)
        if passed:
            return 0
        # Judge only a freshly built environment: a kept one may be stale.
        print(f"{why}; building the environment again", file=sys.stderr)
        shutil.rmtree(venv)
    kept = keep(pins)
    if kept is None:
        print("could not install the lowest allowed versions:", *pins, file=sys.stderr)
        return 1
    passed, why = imports_at_the_floors(kept, pins)
    if not passed:
        print(f"{why} with:", *pins, file=sys.stderr)
        return 1
    return 0


def main() -> int:
    pins = lowest_pins((REPO / "pyproject.toml").read_text("utf-8"))
    if "--pins" in sys.argv[1:]:
        print("\n".join(pins))
        return 0
    return check(pins)


if __name__ == "__main__":
    sys.exit(main())
