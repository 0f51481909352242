"""Helpers for tests that run `mailer` as a real process from a folder.

A test writes ``mailer.toml`` and ``people.csv`` into a folder, then runs
``python -m mailer ...`` there with an environment free of ``MAILER_*``
variables from the outer shell, so only the test's settings apply.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from tests.conftest import REPO, TEST_SECRET

MAILER = [sys.executable, "-m", "mailer"]


def toml_value(value: object) -> str:
    """``value`` as a TOML value: a string, boolean, integer or float."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    raise TypeError(f"no TOML form for {value!r}")


def render_toml(sections: dict[str, dict[str, object]]) -> str:
    """Tables of plain key = value lines, in the order given."""
    lines: list[str] = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in values.items())
    return "\n".join(lines) + "\n"


def update_config(path: Path, section: str, **values: object) -> None:
    """Set keys of one table of the config file at ``path`` (read, merged, written again)."""
    with path.open("rb") as fh:
        data: dict[str, dict[str, object]] = tomllib.load(fh)
    data.setdefault(section, {}).update(values)
    path.write_text(render_toml(data), "utf-8")


def write_config(
    folder: Path,
    *,
    database_url: str,
    smtp_port: int | None,
    base_url: str = "https://act.example.org",
    organization_name: str | None = "Rights Network",
    sections: dict[str, dict[str, object]] | None = None,
) -> Path:
    """Write ``folder/mailer.toml`` and return its path.

    ``smtp_port=None`` leaves out the ``[smtp]`` table and
    ``organization_name=None`` the organization's name. ``sections`` adds
    tables (``schedule``, ``sending``…) or keys to the tables written here.
    """
    data: dict[str, dict[str, object]] = {"database": {"url": database_url}}
    if smtp_port is not None:
        data["smtp"] = {"host": "127.0.0.1", "port": smtp_port}
    data["sender"] = {"address": "alerts@example.org"}
    organization: dict[str, object] = {"postal_address": "1 Example Way"}
    if organization_name is not None:
        organization = {"name": organization_name, **organization}
    data["organization"] = organization
    data["web"] = {"base_url": base_url}
    data["security"] = {"secret_key": TEST_SECRET}
    data["templates"] = {"dir": (REPO / "templates").as_posix()}
    for name, values in (sections or {}).items():
        data.setdefault(name, {}).update(values)
    path = folder / "mailer.toml"
    path.write_text(render_toml(data), "utf-8")
    return path


def numbered(
    count: int, letter: str = "p", domain: Callable[[int], str] = lambda i: "example.org"
) -> Iterator[tuple[str, str]]:
    """``count`` supporters: (``p0@example.org``, ``P0``), (``p1@…``, ``P1``)…"""
    for i in range(count):
        yield f"{letter}{i}@{domain(i)}", f"{letter.upper()}{i}"


def write_people(folder: Path, people: Iterable[tuple[str, str]]) -> Path:
    """Write ``folder/people.csv`` with email and first_name columns; return its path."""
    path = folder / "people.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["email", "first_name"])
        writer.writerows(people)
    return path


def mailer_env(config: Path | None = None) -> dict[str, str]:
    """This process's environment without ``MAILER_*``; ``MAILER_CONFIG`` set to ``config``.

    Without ``config`` the process reads ``mailer.toml`` from its working folder.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    if config is not None:
        env["MAILER_CONFIG"] = str(config)
    return env


def run_mailer(
    cwd: Path,
    *args: str,
    config: Path | None = None,
    input: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m mailer *args`` in ``cwd`` to the end, capturing its output."""
    return subprocess.run(
        [*MAILER, *args],
        cwd=cwd,
        env=mailer_env(config),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
