"""Helpers for tests that run `mailer` as a real process from a folder.

A test writes ``mailer.toml`` and ``people.csv`` into a folder, then runs
``python -m mailer ...`` there with an environment free of ``MAILER_*``
variables from the outer shell, so only the test's settings apply.
:class:`Site` is the harness of the tests of long-running processes
(``mailer run``, ``worker``, ``scheduler``): a folder with settings and the
processes started from it; :func:`blast_site` makes one ready to send a blast.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import httpx
from sqlmodel import col, func, select

from mailer.send import workers
from mailer.store import Blast, Database, SenderWorker, open_database
from tests.conftest import REPO, TEST_SECRET
from tests.smtpserver import SmtpTestServer

MAILER = [sys.executable, "-m", "mailer"]
SITE_URL = "https://act.example.org"  # web.base_url when no test serves the links


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
    base_url: str = SITE_URL,
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


def wait_for(condition: Callable[[], bool], seconds: float = 30.0) -> float:
    """Wait until ``condition``; return how long it took."""
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < seconds, "condition not reached in time"
        time.sleep(0.05)
    return time.monotonic() - began


def stopped(pid: int) -> bool:
    """Whether process ``pid`` is stopped by a signal (Linux's /proc)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rpartition(")")[2].split()[0] == "T"  # the state follows the name


def stop_while_holding(
    db: Database, process: subprocess.Popen[str], blast_id: int = 1, seconds: float = 30.0
) -> None:
    """Stop ``process`` (SIGSTOP) at a moment when it holds deliveries of ``blast_id``.

    Waiting for mail to arrive is not enough: under load one sender may not have
    started, or be between two claims, while the others send that much, and a
    sender that holds nothing leaves nothing to take over. Checking while it is
    stopped makes the check true at the moment the test acts. The caller sends
    its signal next; a stopped process takes SIGKILL at once, and others after
    SIGCONT.
    """
    began = time.monotonic()
    while True:
        os.kill(process.pid, signal.SIGSTOP)
        wait_for(lambda: stopped(process.pid), seconds=5)
        with db.session() as session:
            holding = workers.holders(session, blast_id)
            ours = session.exec(
                select(SenderWorker.name).where(
                    col(SenderWorker.name).in_(holding), SenderWorker.pid == process.pid
                )
            ).first()
        if ours is not None:
            return
        os.kill(process.pid, signal.SIGCONT)
        assert process.poll() is None, "the process ended before it held anything"
        assert time.monotonic() - began < seconds, "the process never held a delivery"
        time.sleep(0.02)


class Site:
    """A folder with settings (``config``) and the long-running ``mailer`` processes
    started from it (``run``, ``worker``, ``scheduler``); :func:`blast_site` makes one
    ready to send a blast.

    Each process logs JSON lines to a file of its own (read with :meth:`log` and
    :meth:`events`); :meth:`close` kills whatever is still running.
    """

    def __init__(
        self,
        path: Path,
        config: Path,
        url: str,
        smtp: SmtpTestServer,
        web_port: int | None = None,
    ) -> None:
        self.path = path
        self.config = config
        self.url = url
        self.smtp = smtp
        self.web_port = web_port
        self.processes: list[tuple[subprocess.Popen[str], IO[str]]] = []

    @functools.cached_property
    def db(self) -> Database:
        """The site's database, opened from the test (on first use)."""
        return open_database(self.url)

    def env(self) -> dict[str, str]:
        return mailer_env(self.config)

    def mailer(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run one ``mailer`` command to the end."""
        return run_mailer(self.path, *args, config=self.config)

    def ok(self, *args: str) -> str:
        """Run one ``mailer`` command that must succeed; its output."""
        done = self.mailer(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def start(self, command: str, *args: str) -> subprocess.Popen[str]:
        """Start ``mailer command *args`` (``run``, ``worker``, ``scheduler``...) and leave it."""
        log = (self.path / f"{command}-{len(self.processes)}.log").open("w+", encoding="utf-8")
        process = subprocess.Popen(
            [*MAILER, command, *args, "--json-logs"],
            cwd=self.path,
            env=self.env(),
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )
        self.processes.append((process, log))
        return process

    def start_service(self, port: int | None = None) -> subprocess.Popen[str]:
        """Start ``mailer run`` on ``port`` (the site's web port) and wait until it answers."""
        port = port or self.web_port
        assert port is not None, "a service needs a web port"
        process = self.start("run", "--port", str(port))
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).text == "ok":
                    return process
            except httpx.TransportError:
                pass
            assert process.poll() is None, self.log(process)
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.1)

    def log(self, process: subprocess.Popen[str]) -> str:
        """What ``process`` wrote to its standard error so far."""
        log = next(lg for p, lg in self.processes if p is process)
        return Path(log.name).read_text("utf-8")

    def events(self, process: subprocess.Popen[str]) -> list[str]:
        """The ``event`` of each JSON line ``process`` logged so far."""
        return [
            json.loads(line).get("event", "")
            for line in self.log(process).splitlines()
            if line.startswith("{")
        ]

    def stop(self, process: subprocess.Popen[str]) -> str:
        """SIGTERM, as a service manager stops it; it must exit 0. Its whole log."""
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        assert process.returncode == 0, self.log(process)
        return self.log(process)

    def stop_all(self) -> None:
        """:meth:`stop` every process still running."""
        for process, _ in self.processes:
            if process.poll() is None:
                self.stop(process)

    def close(self) -> None:
        for process, log in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
            log.close()
        if "db" in self.__dict__:
            self.db.dispose()

    def schedule_in(self, seconds: float, blast: str = "1") -> datetime:
        """Schedule ``blast`` that many seconds from now (whole seconds); when.

        The time is taken before the command starts, and a time already past is
        refused: on a loaded machine a new ``mailer`` process can take more than
        3 s to start, so 5 s is the least to ask for.
        """
        at = (datetime.now(UTC) + timedelta(seconds=seconds)).replace(microsecond=0)
        self.ok("blast", "schedule", blast, "--at", at.isoformat())
        return at

    def status_of(self, blast: int) -> str:
        """The status of ``blast`` as ``mailer blast list`` shows it."""
        line = next(
            ln for ln in self.ok("blast", "list").splitlines()[1:] if ln.split()[0] == str(blast)
        )
        return line.split()[1]

    def blast(self) -> Blast:
        """Blast 1, as stored now."""
        with self.db.session() as session:
            blast = session.get(Blast, 1)
            assert blast is not None
            return blast

    def count(self, model: Any, *where: Any) -> int:
        """Rows of ``model`` that match ``where``, counted in the site's database."""
        with self.db.session() as session:
            found: int = session.exec(select(func.count()).select_from(model).where(*where)).one()
            return found


def blast_site(
    path: Path,
    url: str,
    smtp: SmtpTestServer,
    *,
    people: int,
    blast: str = "alert",
    web_port: int | None = None,
    organization_name: str | None = "Rights Network",
) -> Site:
    """A site with ``people`` supporters on list ``all`` and one draft blast (1).

    Settings: the database at ``url``, the test SMTP server, fast polling and
    retries; with ``web_port``, links point at a service on that port.
    """
    config = write_config(
        path,
        database_url=url,
        smtp_port=smtp.port,
        base_url=SITE_URL if web_port is None else f"http://127.0.0.1:{web_port}",
        organization_name=organization_name,
        sections={
            "schedule": {"poll_interval": 0.5, "misfire_grace": 30},
            "sending": {"control_interval": 0.2, "retry_base": 0.1},
        },
    )
    write_people(path, numbered(people))
    site = Site(path, config, url, smtp, web_port)
    site.ok("import", "people.csv", "--list", "all")
    created = site.ok("blast", "create", blast, "-t", "executive-orders", "-l", "all")
    assert created.strip() == "1"
    return site
