"""The dependency floors in pyproject.toml are true: the lowest allowed versions import mailer.

``.ci/lowest_versions.py`` pins every direct dependency to its ``>=`` floor,
installs the pins in a virtual environment (from PyPI; kept between runs under
``.venv/lowest-versions/``), checks the installed versions are the floors and
imports every module of the package there. It runs here so that
``make test`` (and so CI) fails when code uses an API newer than a floor.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO

SCRIPT = REPO / ".ci" / "lowest_versions.py"


def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lowest_versions", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pins_are_the_floors_of_the_direct_dependencies() -> None:
    pyproject = """
[project]
dependencies = ["jinja2>=3.1.4", "apscheduler>=3.10.4,<4", "psycopg[binary]>=3.2.3"]
[project.optional-dependencies]
dev = ["pytest>=8.3"]
"""
    assert script().lowest_pins(pyproject) == [
        "jinja2==3.1.4",
        "apscheduler==3.10.4",
        "psycopg[binary]==3.2.3",
    ]
    with pytest.raises(ValueError, match="'zipcodes' needs exactly one '>=' floor"):
        script().lowest_pins('[project]\ndependencies = ["zipcodes"]\n')


def test_the_lowest_allowed_versions_import_every_module() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT)], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "imported every module of mailer" in done.stdout


def test_an_environment_with_other_versions_than_the_floors_fails_the_check() -> None:
    """A kept environment is trusted only as far as its installed versions are the floors."""
    this = Path(sys.prefix)  # this environment has click, but not click 8.0.0
    passed, why = script().imports_at_the_floors(this, ["click==8.0.0"])
    assert not passed
    assert "installed versions are not the floors" in why and "'click'" in why
