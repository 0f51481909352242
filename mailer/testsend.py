"""Test sends: who may get one, and handing the messages over.

A test send goes to an organizer's own addresses, whatever alert or blast it
shows; the same rules hold for ``mailer blast test``, the blast page's test
and the studio's: at most ``blast.test_send_limit`` addresses a call (the
same address twice is one, compared in the one normalized form every address
is stored in), and an address on the suppression list, or whose supporter is
not active, gets nothing and is answered as not sent, with the reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlmodel import col, select

from mailer.compose.alert import OutgoingMessage
from mailer.config import Settings
from mailer.errors import InvalidState
from mailer.send.outcome import Outcome, Verdict
from mailer.send.transport import SmtpTransport
from mailer.store import Database, Supporter, SupporterStatus, Suppression
from mailer.supporters.columns import normalize_email


@dataclass(frozen=True)
class Seeds:
    """The addresses a test goes to, and what is known of them."""

    addresses: list[str]  # normalized, without repeats, in the order given
    people: dict[str, Supporter]  # those that are supporters, by address
    suppressed: frozenset[str]

    def refusal(self, address: str) -> Outcome | None:
        """Why ``address`` gets no test, as the outcome to show; None when it may."""
        if address in self.suppressed:
            return Outcome(Verdict.FAILED, None, "not sent: the address is on the suppression list")
        known = self.people.get(address)
        if known is not None and known.status != SupporterStatus.ACTIVE:
            return Outcome(Verdict.FAILED, None, f"not sent: the supporter is {known.status}")
        return None

    def messages(
        self, message_for: Callable[[str, Supporter | None], OutgoingMessage]
    ) -> list[tuple[str, OutgoingMessage | Outcome]]:
        """Each address with its message, or with why it gets none (for :func:`deliver`)."""
        out: list[tuple[str, OutgoingMessage | Outcome]] = []
        for address in self.addresses:
            refused = self.refusal(address)
            out.append((address, refused or message_for(address, self.people.get(address))))
        return out


def seeds(db: Database, settings: Settings, addresses: Sequence[str]) -> Seeds:
    """Check ``addresses``; :class:`InvalidState` naming the first bad one, or too many."""
    checked: list[str] = []
    for address in addresses:
        email, problem = normalize_email(address)
        if problem:
            raise InvalidState(f"{address.strip()!r} is not an email address: {problem}")
        if email not in checked:
            checked.append(email)
    if not checked:
        raise InvalidState("give at least one address to send the test to")
    limit = settings.blast.test_send_limit
    if len(checked) > limit:
        raise InvalidState(
            f"a test send goes to at most {limit} addresses, not {len(checked)} "
            "(the setting blast.test_send_limit)"
        )
    with db.session() as session:
        people = {
            s.email: s
            for s in session.exec(select(Supporter).where(col(Supporter.email).in_(checked)))
        }
        suppressed = frozenset(
            session.exec(select(Suppression.email).where(col(Suppression.email).in_(checked)))
        )
    return Seeds(checked, people, suppressed)


def deliver(
    settings: Settings, messages: Sequence[tuple[str, OutgoingMessage | Outcome]]
) -> list[tuple[str, Outcome]]:
    """Hand each message to the relay over one connection; an outcome given stays as it is."""

    async def deliver_all() -> list[tuple[str, Outcome]]:
        transport = SmtpTransport(settings.smtp, connect_attempts=settings.sending.connect_attempts)
        results = []
        try:
            for address, message in messages:
                if isinstance(message, Outcome):
                    results.append((address, message))
                else:
                    results.append((address, await transport.deliver(message)))
        finally:
            await transport.close()
        return results

    return asyncio.run(deliver_all())
