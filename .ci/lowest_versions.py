"""Install the lowest versions pyproject.toml allows, then import every module of mailer.

pip has no "lowest" resolution, so each direct dependency's ``>=`` floor in
``[project].dependencies`` becomes an ``==`` pin. The pins go into a scratch
virtual environment (pip's cache keeps a second run fast) and every module
of the package is imported there, from the source tree, so code that uses a
newer API than the floor allows fails here instead of on a user's machine.

    python .ci/lowest_versions.py          # check; exit status 1 on failure
    python .ci/lowest_versions.py --pins   # print the pins only
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
# Loaded by Alembic with its context set up, not importable on their own.
NOT_IMPORTED = ("mailer.store.migrations", "mailer.__main__")  # and this one runs the CLI
IMPORT_ALL = f"""
import importlib, pkgutil, mailer
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


def check(pins: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="mailer-lowest-") as scratch:
        venv = Path(scratch) / "venv"
        # No pip inside: this interpreter's pip installs into it (--python), which saves
        # seconds, as skipping the byte-compiling does.
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        python = venv / "bin" / "python"
        pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
        install = subprocess.run([*pip, "install", "--quiet", "--no-compile", *pins], check=False)
        if install.returncode != 0:
            print("could not install the lowest allowed versions:", *pins, file=sys.stderr)
            return 1
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
        env["PYTHONPATH"] = str(REPO)
        done = subprocess.run([str(python), "-c", IMPORT_ALL], cwd=scratch, env=env, check=False)
        if done.returncode != 0:
            print("mailer does not import with:", *pins, file=sys.stderr)
        return done.returncode


def main() -> int:
    pins = lowest_pins((REPO / "pyproject.toml").read_text("utf-8"))
    if "--pins" in sys.argv[1:]:
        print("\n".join(pins))
        return 0
    return check(pins)


if __name__ == "__main__":
    sys.exit(main())
