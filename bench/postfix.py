"""Postfix's ``smtp-sink`` and ``smtp-source``: finding them, installing them, running them.

Both come from the Debian package ``postfix``. When they are missing the bench
installs the package with ``apt-get`` (debconf preseeded to "No configuration",
so no mail server is set up), unless told not to (``--no-install``). When that
is impossible or not allowed, :func:`ensure_tools`
says why and the caller goes on without a ceiling.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

SBIN = Path("/usr/sbin")
HOST = "127.0.0.1"
_MESG = re.compile(rb"mesg=(\d+)")


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that the kernel considered free a moment ago (never 25)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if port > 1024:
            return port


def _tool(name: str) -> Path | None:
    found = shutil.which(name) or shutil.which(name, path=str(SBIN))
    return Path(found) if found else None


@dataclass(frozen=True)
class Tools:
    sink: Path
    source: Path


def _apt(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["apt-get", *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )


def ensure_tools(*, log: bool = True, install: bool = True) -> Tools | str:
    """The two tools, installing ``postfix`` if missing and ``install``; or why not available."""
    sink, source = _tool("smtp-sink"), _tool("smtp-source")
    if sink and source:
        return Tools(sink, source)
    if not install:
        return "smtp-sink/smtp-source missing (postfix not installed: --no-install)"
    if os.geteuid() != 0:
        return (
            "smtp-sink/smtp-source missing and not running as root, so postfix cannot be installed"
        )
    if shutil.which("apt-get") is None:
        return "smtp-sink/smtp-source missing and there is no apt-get to install postfix with"
    if log:
        print("installing postfix (for smtp-sink and smtp-source) with apt-get ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if shutil.which("debconf-set-selections"):
        subprocess.run(
            ["debconf-set-selections"],
            input="postfix postfix/main_mailer_type select No configuration\n"
            "postfix postfix/mailname string localhost\n",
            text=True,
            check=False,
            capture_output=True,
        )
    command = ["install", "-y", "--no-install-recommends", "postfix"]
    try:
        done = _apt(command, env)
        if done.returncode != 0:
            _apt(["update"], env)
            done = _apt(command, env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"installing postfix failed: {exc}"
    sink, source = _tool("smtp-sink"), _tool("smtp-source")
    if sink and source:
        return Tools(sink, source)
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    return "installing postfix failed: " + (" | ".join(tail) or f"apt-get exit {done.returncode}")


def wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Receiver:
    """An SMTP server on 127.0.0.1:``port``, as a subprocess, for the duration of a ``with`` block.

    It runs in its own process group, which is terminated at the end. Its
    output goes to ``log_path``, never to the bench's output.
    """

    name = "receiver"

    def __init__(self, args: list[str], port: int, log_path: Path) -> None:
        self.args = args
        self.port = port
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Receiver:
        with self.log_path.open("wb") as out:
            self._proc = subprocess.Popen(
                self.args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            wait_listening(self.port)
        except OSError:
            self.close()
            raise RuntimeError(
                f"{self.name} did not start listening on {HOST}:{self.port}: "
                + self.log_path.read_text(errors="replace").strip()
            ) from None
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def received(self) -> int | None:
        """Messages received so far, when the server reports it."""
        return None

    def cpu_s(self) -> float | None:
        """CPU seconds (user + system) the server process has used so far; None if unknown."""
        if self._proc is None:
            return None
        try:
            fields = Path(f"/proc/{self._proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        # After "pid (comm)": state is field 3 of stat(5), utime 14 and stime 15.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=5)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class SmtpSink(Receiver):
    """Postfix's ``smtp-sink``: accepts every message and throws it away.

    ``-c`` makes it print running counters (``mesg=N``), read back by
    :meth:`received`.
    """

    name = "smtp-sink"

    def __init__(self, tools: Tools, port: int, log_path: Path, backlog: int = 1000) -> None:
        args = [str(tools.sink), "-c"]
        if os.geteuid() == 0:
            args += ["-u", "root"]  # as root, smtp-sink wants a -u user to run as
        args += [f"{HOST}:{port}", str(backlog)]
        super().__init__(args, port, log_path)

    def received(self) -> int | None:
        counts = _MESG.findall(self.log_path.read_bytes()[-200:])
        return int(counts[-1]) if counts else None


class NullSmtp(Receiver):
    """Fallback when smtp-sink is unavailable: an aiosmtpd server that discards everything."""

    name = "aiosmtpd null server"

    def __init__(self, port: int, log_path: Path) -> None:
        super().__init__([sys.executable, "-m", "bench.nullsmtp", str(port)], port, log_path)


def smtp_source(
    tools: Tools, port: int, *, messages: int, sessions: int = 16, size: int = 14000
) -> float:
    """Blast ``messages`` of ``size`` bytes over ``sessions`` sessions; return the seconds taken."""
    args = [
        str(tools.source),
        "-d",  # reuse each session: send the next message over the same connection
        "-l",
        str(size),
        "-s",
        str(sessions),
        "-m",
        str(messages),
        "-f",
        "bench@example.org",
        "-t",
        "sink@example.org",
        f"{HOST}:{port}",
    ]
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"smtp-source exit {done.returncode}: {done.stderr.strip()}")
    return elapsed
