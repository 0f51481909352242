"""Per-message cost, in µs, of the steps a message goes through (no network).

Each figure is a timing loop over a few thousand synthetic supporters, so
per-call overhead is averaged out; the composer is built the way
:func:`mailer.blasts.composer_for` builds it, over a real SQLite database.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from bench.common import (
    TEMPLATE,
    TEMPLATES,
    language_of,
    per_call_us,
    settings_for,
    supporter_context,
)
from bench.e2e import BLAST, prepare
from bench.floor import naive_message
from mailer.blasts import composer_for, find_blast
from mailer.compose import links
from mailer.compose.alert import AlertComposer, Recipient
from mailer.compose.message import build_message, new_message_id, to_bytes
from mailer.compose.templates import AlertTemplate, RenderedAlert
from mailer.send.outcome import Verdict
from mailer.send.transport import SmtpTransport
from mailer.store import Database, open_database


@dataclass(frozen=True)
class Step:
    key: str  # short name the summary looks figures up by
    name: str  # what is printed
    us: float  # µs per message


@dataclass(frozen=True)
class Breakdown:
    steps: list[Step]
    naive_bytes: int  # mean size of a floor message (2:1 en/es)
    mailer_bytes: int  # mean size of a message the mailer composes (2:1 en/es)

    def us(self, key: str) -> float:
        return next(step.us for step in self.steps if step.key == key)


def recipient(i: int) -> Recipient:
    return Recipient(
        email=f"s{i}@example.org",
        first_name=f"First{i}",
        last_name=f"Last{i}",
        zip=f"{i % 100000:05d}",
        language=language_of(i),
    )


def _tracked(composer: AlertComposer, alert: RenderedAlert, delivery_id: int) -> RenderedAlert:
    """``alert`` with its links rewritten the way :meth:`AlertComposer.compose` does."""

    def track(url: str) -> str:
        link_id = composer.link_ids.link_id(url)
        return f"{composer.base_url}/c/{composer.signer.click(delivery_id, link_id)}"

    own = composer.base_url + "/"
    return RenderedAlert(
        language=alert.language,
        subject=alert.subject,
        preheader=alert.preheader,
        html=links.rewrite_html(alert.html, own, track),
        text=links.rewrite_text(alert.text, own, track),
    )


def _composer(folder: Path) -> tuple[Database, AlertComposer]:
    """A blast's composer over a small real database in ``folder``, as send_now builds it."""
    prepare(folder, 3)
    db = open_database(f"sqlite:///{folder}/bench.db")
    with db.session() as session:
        blast = find_blast(session, BLAST)
    return db, composer_for(db, settings_for(port=0), blast)


def transport_us(port: int, n: int) -> tuple[float, int]:
    """µs per message of :class:`SmtpTransport` delivering pre-composed messages, one connection.

    Returns the figure and how many of the ``n`` deliveries the receiver accepted.
    """
    with tempfile.TemporaryDirectory(prefix="mailer-bench-") as tmp:
        db, composer = _composer(Path(tmp))
        composed = [composer.compose(i + 1, recipient(i)).message for i in range(3)]
        db.dispose()
    outgoing = [
        replace(composed[i % 3], delivery_id=i + 1, recipient=f"s{i}@example.org") for i in range(n)
    ]

    async def deliver_all() -> tuple[float, int]:
        transport = SmtpTransport(settings_for(port).smtp)
        try:
            await transport.deliver(outgoing[0])  # connect and greet outside the timing
            start = time.perf_counter()
            sent = 0
            for message in outgoing:
                outcome = await transport.deliver(message)
                sent += outcome.verdict is Verdict.SENT
            return time.perf_counter() - start, sent
        finally:
            await transport.close()

    seconds, sent = asyncio.run(deliver_all())
    return seconds / n * 1e6, sent


def measure(iterations: int = 2000) -> Breakdown:
    """Each figure is the median of 3 loops; the ms-scale steps loop over half as many."""
    heavy = max(1, iterations // 2)
    template = AlertTemplate(TEMPLATES, TEMPLATE)
    contexts = [supporter_context(i) for i in range(iterations)]
    rendered = [template.render(c, c["supporter"]["language"]) for c in contexts[:3]]

    def render(i: int) -> object:
        ctx = contexts[i % iterations]
        return template.render(ctx, ctx["supporter"]["language"])

    def naive_mime(i: int) -> object:
        return naive_message(rendered[i % 3], f"s{i}@example.org").as_bytes()

    steps = [
        Step(
            "render",
            "Jinja render of the alert (subject, preheader, HTML, text)",
            per_call_us(render, iterations * 2),
        ),
        Step(
            "naive_mime",
            "naive EmailMessage build + as_bytes (the floor's MIME)",
            per_call_us(naive_mime, heavy),
        ),
    ]

    with tempfile.TemporaryDirectory(prefix="mailer-bench-") as tmp:
        db, composer = _composer(Path(tmp))
        recipients = [recipient(i) for i in range(iterations)]
        alerts = [composer.template.render(c, c["supporter"]["language"]) for c in contexts[:3]]
        tracked = [_tracked(composer, a, 1) for a in alerts]
        identity = composer.identity

        def compose(i: int) -> object:
            return composer.compose(i + 1, recipients[i])

        def tokens_and_links(i: int) -> object:
            composer.signer.unsubscribe(i + 1)
            return _tracked(composer, alerts[i % 3], i + 1)

        def mime(i: int) -> object:
            r = recipients[i]
            token = composer.signer.unsubscribe(i + 1)
            msg = build_message(
                tracked[i % 3],
                identity=identity,
                to_name=r.display_name,
                to_address=r.email,
                message_id=new_message_id(1, i + 1, identity.domain),
                unsubscribe_url=f"{composer.base_url}/u/{token}",
                unsubscribe_token=token,
                date=composer.clock(),
            )
            return to_bytes(msg)

        total = per_call_us(compose, heavy)
        steps += [
            Step("compose", "mailer AlertComposer.compose, all of it", total),
            Step(
                "links",
                "  of which: tokens + link rewriting",
                per_call_us(tokens_and_links, iterations),
            ),
            Step(
                "mime",
                "  of which: build_message + to_bytes (MIME)",
                per_call_us(mime, heavy),
            ),
        ]
        sizes = [len(composer.compose(i + 1, recipients[i]).message.data) for i in range(3)]
        db.dispose()
    naive_sizes = [len(naive_message(r, "s1@example.org").as_bytes()) for r in rendered]
    return Breakdown(steps, round(sum(naive_sizes) / 3), round(sum(sizes) / 3))
