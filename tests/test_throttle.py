"""Pacing, pure: the token bucket and the per-domain scheduler, on a clock the test turns."""

from __future__ import annotations

import pytest

from mailer.send.outcome import Outcome, Verdict
from mailer.send.throttle import DomainScheduler, TokenBucket


def test_token_bucket_paces_to_its_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(10.0, burst=1.0, clock=lambda: now[0])
    assert bucket.wait_time() == 0.0
    bucket.take()
    assert abs(bucket.wait_time() - 0.1) < 1e-9
    now[0] += 0.1
    assert bucket.wait_time() == 0.0


def _picked_in(scheduler: DomainScheduler[int], now: list[float], seconds: float) -> int:
    """How many jobs the scheduler hands out over ``seconds`` of its clock."""
    picked = 0
    for _ in range(int(seconds * 100)):
        now[0] += 0.01
        while (found := scheduler.get_nowait()) is not None:
            scheduler.done(found[0], None)
            picked += 1
    return picked


@pytest.mark.parametrize(("rate", "domain_rate"), [(10.0, 0.0), (0.0, 10.0)])
def test_senders_on_one_machine_divide_the_rates(rate: float, domain_rate: float) -> None:
    now = [0.0]
    scheduler: DomainScheduler[int] = DomainScheduler(
        concurrency=0, rate=rate, domain_rate=domain_rate, clock=lambda: now[0]
    )
    for i in range(1000):
        scheduler.put("a.example.org", i)
    scheduler.share(2)  # two sender processes on the blast: each keeps to half
    assert 48 <= _picked_in(scheduler, now, 10.0) <= 56
    scheduler.share(1)  # the other one left: the whole rate again
    assert 98 <= _picked_in(scheduler, now, 10.0) <= 106


def test_a_domain_that_answers_421_is_backed_off_adaptively() -> None:
    now = [100.0]
    scheduler: DomainScheduler[str] = DomainScheduler(concurrency=1, clock=lambda: now[0])
    scheduler.put("busy.example.org", "a")
    scheduler.put("busy.example.org", "b")
    picked = scheduler.get_nowait()
    assert picked == ("busy.example.org", "a")
    scheduler.done("busy.example.org", Outcome(Verdict.RETRY, 421, "4.7.0 slow down", "4.7.0"))
    assert scheduler.backoff_of("busy.example.org") == 2.0
    now[0] = 101.99
    assert scheduler.get_nowait() is None  # "b" waits out the backoff: 2 s ...
    now[0] = 102.0
    assert scheduler.get_nowait() == ("busy.example.org", "b")  # ... and no longer
    scheduler.done("busy.example.org", Outcome(Verdict.RETRY, 421, "4.7.0 slow down", "4.7.0"))
    assert scheduler.backoff_of("busy.example.org") == 4.0  # doubled on repeat
    scheduler.put("busy.example.org", "c")
    now[0] += 4.0
    assert scheduler.get_nowait() == ("busy.example.org", "c")
    scheduler.done("busy.example.org", Outcome(Verdict.SENT, 250, "ok"))
    assert scheduler.backoff_of("busy.example.org") == 2.0  # shrinks as mail goes through
