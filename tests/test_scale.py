"""Several sender processes on one blast, sharing one PostgreSQL schema.

Invariant 1 across workers: every recipient gets the blast exactly once, also
when a sender is killed (``kill -9``) or stalls past its lease; the only
messages in doubt are those in flight, reported ``unknown``. The blast's rate
limit holds for the sum of the senders, measured at the receiving server.
"""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlmodel import select

from mailer.send import shared_rate
from mailer.store import Blast, BlastStatus, Database, Event
from tests.processes import (
    MAILER,
    mailer_env,
    run_mailer,
    stop_while_holding,
    write_config,
    write_people,
)
from tests.smtpserver import SmtpTestServer

RECIPIENTS = 400
DOMAINS = 5


@pytest.fixture
def server() -> Iterator[SmtpTestServer]:
    server = SmtpTestServer()
    server.handler.delay = 0.05  # 20 messages a second per connection
    server.start()
    yield server
    server.stop()


def prepare(
    cwd: Path,
    db: Database,
    port: int,
    recipients: int = RECIPIENTS,
    domains: int = DOMAINS,
    **sending: object,
) -> None:
    defaults = {"connections": 2, "batch_size": 40, "control_interval": 0.2, "lease_seconds": 2.0}
    write_config(
        cwd,
        database_url=db.engine.url.render_as_string(hide_password=False),
        smtp_port=port,
        sections={"sending": {**defaults, **sending}},
    )
    write_people(cwd, ((address(i, domains), f"R{i}") for i in range(recipients)))
    imported = mailer(cwd, "import", "people.csv", "--list", "all")
    assert imported.returncode == 0, imported.stderr
    created = mailer(cwd, "blast", "create", "b", "-t", "executive-orders", "-l", "all")
    assert created.stdout.strip() == "1", created.stderr


def address(i: int, domains: int = DOMAINS) -> str:
    return f"r{i}@d{i % domains}.example.org"


def mailer(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_mailer(cwd, *args)


Spawn = Callable[[Path, int], list[subprocess.Popen[str]]]


@pytest.fixture
def spawn(pg_db: Database) -> Iterator[Spawn]:
    """Starts sender processes; kills any still running before the schema is dropped.

    It depends on ``pg_db`` so that it is torn down first: a failed assertion
    must not leave senders working in a schema that is being dropped.
    """
    started: list[subprocess.Popen[str]] = []

    def start_senders(cwd: Path, count: int) -> list[subprocess.Popen[str]]:
        new = [
            subprocess.Popen(
                [*MAILER, "blast", "send", "1"],
                cwd=cwd,
                env=mailer_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(count)
        ]
        started.extend(new)
        return new

    yield start_senders
    for process in started:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)  # a stalled one must be able to die
            process.kill()
        process.communicate()


def wait_until_received(server: SmtpTestServer, count: int) -> None:
    deadline = time.monotonic() + 60
    while len(server.handler.received) < count:
        assert time.monotonic() < deadline, len(server.handler.received)
        time.sleep(0.01)


def finish(senders: list[subprocess.Popen[str]]) -> list[tuple[int, str, str]]:
    results = []
    for sender in senders:
        out, err = sender.communicate(timeout=120)
        results.append((sender.returncode, out, err))
    return results


def per_recipient(server: SmtpTestServer) -> Counter[str]:
    return Counter(r.rcpt_tos[0] for r in server.handler.received)


def unknown_addresses(cwd: Path) -> set[str]:
    listed = mailer(cwd, "log", "1", "--state", "unknown", "--csv")
    assert listed.returncode == 0, listed.stderr
    return {row["email"] for row in csv.DictReader(io.StringIO(listed.stdout))}


def blast_status(db: Database) -> BlastStatus:
    with db.session() as session:
        status = session.exec(select(Blast.status).where(Blast.id == 1)).one()
    return BlastStatus(status)


def actions(db: Database) -> Counter[str]:
    with db.session() as session:
        return Counter(session.exec(select(Event.action).where(Event.blast_id == 1)).all())


@pytest.mark.processes
def test_three_senders_send_everyone_exactly_once(
    tmp_path: Path, pg_db: Database, server: SmtpTestServer, spawn: Spawn
) -> None:
    prepare(tmp_path, pg_db, server.port)
    results = finish(spawn(tmp_path, 3))
    for code, _, err in results:
        assert code == 0, err
    assert per_recipient(server) == {address(i): 1 for i in range(RECIPIENTS)}
    assert blast_status(pg_db) is BlastStatus.DONE
    # One audience snapshot; the two others joined the blast already sending.
    done = actions(pg_db)
    assert done["blast.started"] == 1 and done["blast.joined"] == 2
    assert done["blast.finished"] == 1
    assert sum("done" in out for _, out, _ in results) >= 1


@pytest.mark.processes
def test_kill_9_one_of_three_the_others_finish_without_duplicates(
    tmp_path: Path, pg_db: Database, server: SmtpTestServer, spawn: Spawn
) -> None:
    prepare(tmp_path, pg_db, server.port)
    senders = spawn(tmp_path, 3)
    wait_until_received(server, RECIPIENTS // 4)
    stop_while_holding(pg_db, senders[0])
    os.kill(senders[0].pid, signal.SIGKILL)
    senders[0].communicate(timeout=10)  # reaped, so its process is gone at once
    for code, _, err in finish(senders[1:]):
        assert code == 0, err

    assert blast_status(pg_db) is BlastStatus.DONE
    unknown = unknown_addresses(tmp_path)
    counts = per_recipient(server)
    # In doubt: at most two messages per connection of the killed sender, plus those
    # accepted whose outcome waited for the next group commit.
    assert len(unknown) <= 10
    for i in range(RECIPIENTS):
        if address(i) in unknown:
            assert counts[address(i)] <= 1, address(i)
        else:
            assert counts[address(i)] == 1, address(i)
    assert actions(pg_db)["blast.senders_recovered"] >= 1


@pytest.mark.processes
def test_a_stalled_sender_loses_its_lease_and_sends_nothing_more(
    tmp_path: Path, pg_db: Database, server: SmtpTestServer, spawn: Spawn
) -> None:
    prepare(tmp_path, pg_db, server.port, lease_seconds=1.0)
    senders = spawn(tmp_path, 3)
    wait_until_received(server, RECIPIENTS // 4)
    stop_while_holding(pg_db, senders[0])  # alive, but silent past its lease
    try:
        # The others notice within a lease and a watcher tick; a busy machine stretches both.
        deadline = time.monotonic() + 30
        while actions(pg_db)["blast.senders_recovered"] < 1:
            assert time.monotonic() < deadline, "no sender took over the stalled one's rows"
            time.sleep(0.2)
    finally:
        os.kill(senders[0].pid, signal.SIGCONT)
    results = finish(senders)
    for code, _, err in results:
        assert code == 0, err
    assert "lease" in results[0][2]  # the stalled one noticed and stopped

    assert blast_status(pg_db) is BlastStatus.DONE
    unknown = unknown_addresses(tmp_path)
    counts = per_recipient(server)
    assert len(unknown) <= 10
    for i in range(RECIPIENTS):
        expected = {0, 1} if address(i) in unknown else {1}
        assert counts[address(i)] in expected, address(i)


@pytest.mark.processes
def test_sigterm_stops_one_sender_and_the_others_finish_the_blast(
    tmp_path: Path, pg_db: Database, server: SmtpTestServer, spawn: Spawn
) -> None:
    prepare(tmp_path, pg_db, server.port)
    senders = spawn(tmp_path, 2)
    wait_until_received(server, RECIPIENTS // 4)
    stop_while_holding(pg_db, senders[0])  # so that it has work in hand to finish
    senders[0].send_signal(signal.SIGTERM)
    os.kill(senders[0].pid, signal.SIGCONT)
    results = finish(senders)
    for code, _, err in results:
        assert code == 0, err  # the stopped one did not pause the blast: no error
    assert blast_status(pg_db) is BlastStatus.DONE
    assert actions(pg_db)["blast.paused"] == 0
    assert unknown_addresses(tmp_path) == set()  # in-flight mail was finished and recorded
    assert per_recipient(server) == {address(i): 1 for i in range(RECIPIENTS)}


@pytest.mark.processes
def test_the_rate_limit_holds_for_the_sum_of_the_senders(
    tmp_path: Path, pg_db: Database, server: SmtpTestServer, spawn: Spawn
) -> None:
    rate = 20.0
    recipients = 160
    server.handler.delay = 0.0
    prepare(tmp_path, pg_db, server.port, recipients=recipients, rate=rate)
    for code, _, err in finish(spawn(tmp_path, 3)):
        assert code == 0, err
    assert per_recipient(server) == {address(i): 1 for i in range(recipients)}
    arrivals = sorted(r.at for r in server.handler.received)
    # The shared bucket starts with one grant's worth; everything after it is paced.
    paced = recipients - shared_rate.grant_size(rate)
    measured = paced / (arrivals[-1] - arrivals[0])
    assert measured <= rate * 1.1, measured
    assert measured >= rate * 0.6, measured  # and the senders did keep up with it
    for start in arrivals:  # in no 2-second window more than 2 seconds' worth and a grant each
        window = sum(1 for t in arrivals if start <= t < start + 2.0)
        assert window <= 2 * rate + 4 * shared_rate.grant_size(rate), window


@pytest.mark.processes
def test_the_domain_rate_holds_for_the_sum_of_the_senders(
    tmp_path: Path, pg_db: Database, server: SmtpTestServer, spawn: Spawn
) -> None:
    domain_rate = 10.0
    recipients = 120  # 60 to each of two domains
    server.handler.delay = 0.0
    prepare(tmp_path, pg_db, server.port, recipients, 2, domain_rate=domain_rate)
    for code, _, err in finish(spawn(tmp_path, 3)):
        assert code == 0, err
    assert per_recipient(server) == {address(i, 2): 1 for i in range(recipients)}
    by_domain: dict[str, list[float]] = {}
    for r in server.handler.received:
        by_domain.setdefault(r.rcpt_tos[0].rpartition("@")[2], []).append(r.at)
    assert sorted(by_domain) == ["d0.example.org", "d1.example.org"]
    for domain, times in by_domain.items():
        paced = len(times) - shared_rate.grant_size(domain_rate)
        measured = paced / (max(times) - min(times))
        assert domain_rate * 0.6 <= measured <= domain_rate * 1.1, (domain, measured)


@pytest.mark.processes
def test_the_domain_concurrency_is_divided_among_the_senders(
    tmp_path: Path, pg_db: Database, server: SmtpTestServer, spawn: Spawn
) -> None:
    recipients = 150  # all to one domain
    server.handler.delay = 0.1
    prepare(tmp_path, pg_db, server.port, recipients, 1, connections=3, domain_concurrency=3)
    senders = spawn(tmp_path, 3)
    deadline = time.monotonic() + 30
    while actions(pg_db)["blast.joined"] < 2:  # shared once the senders know of each other
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)  # a watcher tick or two
    server.handler.max_in_data.clear()
    for code, _, err in finish(senders):
        assert code == 0, err
    assert per_recipient(server) == {address(i, 1): 1 for i in range(recipients)}
    # Three senders with three connections each would have nine in flight at once.
    assert 1 <= server.handler.max_in_data["d0.example.org"] <= 3


@pytest.mark.parametrize("rate", [7.0, 40.0])
def test_shared_bucket_grants_no_more_than_the_rate(db: Database, rate: float) -> None:
    dialect = db.engine.dialect.name
    size = shared_rate.grant_size(rate)
    with db.session() as session:
        got, wait = shared_rate.take(session, "blast:1", rate=rate, want=100, dialect=dialect)
    assert got == size and wait == 0.0  # a new bucket starts full: one grant's worth
    with db.session() as session:
        got, wait = shared_rate.take(session, "blast:1", rate=rate, want=100, dialect=dialect)
    assert got == 0 and 0 < wait <= 1 / rate
    # Four threads taking as fast as they can, each in its own transactions.
    stop = time.monotonic() + 1.5
    totals: list[int] = []

    def taker() -> None:
        total = 0
        while time.monotonic() < stop:
            with db.session() as session:
                total += shared_rate.take(session, "blast:1", rate=rate, want=2, dialect=dialect)[0]
        totals.append(total)

    threads = [threading.Thread(target=taker) for _ in range(4 if dialect != "sqlite" else 1)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert sum(totals) <= rate * elapsed + 1
    # The lower bound only shows the bucket keeps granting; a busy machine slows the takers.
    assert sum(totals) >= rate * elapsed / 2 - size
    with db.session() as session:
        shared_rate.forget(session, 1)
        got, _ = shared_rate.take(session, "blast:1", rate=rate, want=100, dialect=dialect)
    assert got == size  # forgotten: a fresh, full bucket
