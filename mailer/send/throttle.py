"""Pacing: who may be sent to next, and when.

:class:`DomainScheduler` hands out claimed deliveries to the SMTP workers.
It goes round the recipient domains in turn, so one big domain does not
starve the others, and hands out a delivery only when

- its domain has fewer than ``concurrency`` messages in flight,
- its domain's own rate (``domain_rate``) and the overall rate (``rate``)
  allow one more now (token buckets), and
- its domain is not in backoff.

Backoff is adaptive: a domain that answers ``421`` or a ``4.7.x`` status
("too many connections/messages", RFC 3463 section 3.8 security or policy
status) waits before the next attempt — 2 s, then twice as long on each
repeat up to 5 minutes — and the wait shrinks again as its messages go
through. Refusals of messages already in flight when the backoff began do not
double it again.

With ``grants`` (several senders on one blast, on PostgreSQL) the rates are
shared: besides its own token buckets, which space this sender's messages,
a delivery needs a token granted from the database's bucket for the blast
and for its domain (:mod:`mailer.send.shared_rate`). The domain concurrency
is then this sender's share (:meth:`DomainScheduler.share`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from mailer.send.outcome import Outcome, Verdict
from mailer.send.shared_rate import Quota, grant_size

log = logging.getLogger(__name__)

T = TypeVar("T")
# Asks the shared bucket of a domain (None: the overall one) for tokens: (granted, wait).
Grants = Callable[[str | None, int], Awaitable[tuple[int, float]]]
FIRST_BACKOFF = 2.0
MAX_BACKOFF = 300.0


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; rate 0 means unlimited."""

    def __init__(
        self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self.clock = clock
        self.tokens = self.burst
        self.stamp = clock()

    def wait_time(self) -> float:
        """Seconds until a token is available (0 when one is)."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self) -> None:
        if self.rate > 0:
            self.tokens -= 1


def _set_rate(bucket: TokenBucket, rate: float) -> None:
    """Change an unshared bucket's rate; what it saved up shrinks to the new burst."""
    bucket.wait_time()  # brings the tokens up to now at the old rate
    bucket.rate = rate
    bucket.burst = max(1.0, rate)
    bucket.tokens = min(bucket.tokens, bucket.burst)


def _paced(rate: float) -> float:
    """The burst of a sender's own bucket when the rate is shared: 20 ms' worth, at least 1."""
    return max(1.0, rate / 50)


def is_throttling(outcome: Outcome) -> bool:
    """Does this reply ask us to slow down (421, or a 4.7.x policy status)?"""
    return outcome.verdict is Verdict.RETRY and (
        outcome.code == 421 or outcome.enhanced.startswith("4.7.")
    )


@dataclass
class _Domain(Generic[T]):
    jobs: deque[T] = field(default_factory=deque)
    in_flight: int = 0
    backoff: float = 0.0
    resume_at: float = 0.0
    bucket: TokenBucket | None = None
    quota: Quota | None = None


class DomainScheduler(Generic[T]):
    def __init__(
        self,
        *,
        concurrency: int,
        domain_rate: float = 0.0,
        rate: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        grants: Grants | None = None,
    ) -> None:
        self.limit = concurrency if concurrency > 0 else 1 << 30  # 0: no limit
        self.concurrency = self.limit
        self.domain_rate = domain_rate
        self.rate = rate
        self._senders = 1  # the rates above are divided among this many senders
        # Sharing a rate, this sender spaces its own messages (bursts of 20 ms' worth at most).
        self.overall = TokenBucket(rate, burst=_paced(rate) if grants else None, clock=clock)
        self.clock = clock
        self.grants = grants
        self._domains: dict[str, _Domain[T]] = {}
        self._order: deque[str] = deque()
        self._changed = asyncio.Event()
        self.quota: Quota | None = None
        if grants is not None and rate > 0:
            self.quota = Quota(lambda n: grants(None, n), grant_size(rate), self._changed.set)
        self._closed = False
        self._pending = 0
        self._in_flight = 0

    # -- feeding -------------------------------------------------------------------

    def put(self, domain: str, job: T) -> None:
        entry = self._domains.get(domain)
        if entry is None:
            bucket = quota = None
            if self.domain_rate > 0:
                burst = _paced(self.domain_rate) if self.grants else None
                share = 1 if self.grants else self._senders
                bucket = TokenBucket(self.domain_rate / share, burst=burst, clock=self.clock)
                if self.grants is not None:
                    quota = Quota(
                        self._domain_grant(domain), grant_size(self.domain_rate), self._changed.set
                    )
            entry = self._domains[domain] = _Domain(bucket=bucket, quota=quota)
            self._order.append(domain)
        entry.jobs.append(job)
        self._pending += 1
        self._changed.set()

    def _domain_grant(self, domain: str) -> Callable[[int], Awaitable[tuple[int, float]]]:
        grants = self.grants
        assert grants is not None
        return lambda n: grants(domain, n)

    def share(self, senders: int) -> None:
        """``senders`` send this blast now: the domain concurrency is divided among them.

        Each keeps at least one, so with more senders than the limit the limit
        is the number of senders. Without shared grants (SQLite: the senders
        are processes on one machine) the rates are divided too, so that
        together they keep to them.
        """
        senders = max(1, senders)
        if self.limit < 1 << 30:
            self.concurrency = max(1, self.limit // senders)
        if self.grants is None and senders != self._senders:
            self._senders = senders
            _set_rate(self.overall, self.rate / senders)
            for entry in self._domains.values():
                if entry.bucket is not None:
                    _set_rate(entry.bucket, self.domain_rate / senders)
        self._changed.set()

    def close(self) -> None:
        """No more jobs will come; ``get`` returns None once the pending ones are out."""
        self._closed = True
        self._changed.set()

    def stop_grants(self) -> None:
        """Stop asking the database for tokens (the run is over)."""
        for quota in [self.quota] + [d.quota for d in self._domains.values()]:
            if quota is not None:
                quota.close()

    def drain(self) -> list[T]:
        """Take every job not handed out yet (when stopping)."""
        jobs = [job for entry in self._domains.values() for job in entry.jobs]
        for entry in self._domains.values():
            entry.jobs.clear()
        self._pending = 0
        self._changed.set()
        return jobs

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def idle(self) -> bool:
        return self._pending == 0 and self._in_flight == 0

    # -- handing out ---------------------------------------------------------------

    def _pick(self) -> tuple[str, T] | float:
        """A ready (domain, job), or the seconds until one may be ready."""
        now = self.clock()
        soonest = float("inf")
        for _ in range(len(self._order)):
            domain = self._order[0]
            self._order.rotate(-1)
            entry = self._domains[domain]
            if not entry.jobs or entry.in_flight >= self.concurrency:
                continue
            if entry.resume_at > now:
                soonest = min(soonest, entry.resume_at - now)
                continue
            wait = entry.bucket.wait_time() if entry.bucket else 0.0
            wait = max(wait, self.overall.wait_time())
            if wait > 0:
                soonest = min(soonest, wait)
                continue
            # Shared grants (several senders): a token from the database's buckets too.
            # Not ready means a refill is under way; it wakes ``get`` when done.
            if self.quota is not None and not self.quota.ready():
                return soonest
            if entry.quota is not None and not entry.quota.ready():
                continue
            if entry.bucket:
                entry.bucket.take()
            if entry.quota is not None:
                entry.quota.take()
            if self.quota is not None:
                self.quota.take()
            self.overall.take()
            entry.in_flight += 1
            self._in_flight += 1
            self._pending -= 1
            return domain, entry.jobs.popleft()
        return soonest

    def get_nowait(self) -> tuple[str, T] | None:
        """A job that may go at once, or None (nothing ready now: await ``get``)."""
        picked = self._pick()
        return None if isinstance(picked, float) else picked

    async def get(self) -> tuple[str, T] | None:
        """The next job to send, waiting as long as pacing asks; None when closed and done."""
        while True:
            picked = self._pick()
            if not isinstance(picked, float):
                return picked
            if self._closed and self._pending == 0:
                return None
            self._changed.clear()
            timeout = None if picked == float("inf") else picked
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)

    def done(self, domain: str, outcome: Outcome | None) -> None:
        """A job handed out has finished; ``outcome`` None means it was not attempted."""
        entry = self._domains[domain]
        entry.in_flight -= 1
        self._in_flight -= 1
        if outcome is not None:
            if is_throttling(outcome) and self.clock() >= entry.resume_at:
                # Replies to messages sent before the current backoff began do not
                # compound it: only a refusal after the pause doubles the wait.
                entry.backoff = min(MAX_BACKOFF, max(FIRST_BACKOFF, entry.backoff * 2))
                entry.resume_at = self.clock() + entry.backoff
                log.warning(
                    "%s asks to slow down (%s %s); pausing it for %.0f s",
                    domain,
                    outcome.code,
                    outcome.text,
                    entry.backoff,
                )
            elif outcome.verdict is Verdict.SENT and entry.backoff:
                entry.backoff = entry.backoff / 2 if entry.backoff > FIRST_BACKOFF else 0.0
        self._changed.set()

    def backoff_of(self, domain: str) -> float:
        entry = self._domains.get(domain)
        return entry.backoff if entry else 0.0
