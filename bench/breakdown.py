"""Per-message cost, in µs, of the steps a message goes through, each measured on its own.

Each figure is a timing loop over a few thousand synthetic supporters, so
per-call overhead is averaged out; the composers are built the way
:func:`mailer.assemble.composer_for` builds them, over a real SQLite database,
with DKIM off and on. The SMTP client is measured separately against the
receiver (:func:`transport`), with pre-composed messages, over one connection
(how much of a message's time is its own CPU and how much is waiting for the
server's replies) and over several (how fast the client alone could go).
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

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
from mailer.assemble import composer_for
from mailer.compose import links
from mailer.compose.alert import AlertComposer, OutgoingMessage, Recipient
from mailer.compose.dkim import DkimSigner
from mailer.compose.message import new_message_id
from mailer.compose.templates import AlertTemplate, RenderedAlert
from mailer.send.outcome import Verdict
from mailer.send.transport import SmtpTransport
from mailer.store import Database, find_blast, open_database


@dataclass(frozen=True)
class Step:
    key: str  # short name the summary looks figures up by
    name: str  # what is printed
    us: float  # µs per message


@dataclass(frozen=True)
class Breakdown:
    steps: list[Step]

    def us(self, key: str) -> float:
        return next(step.us for step in self.steps if step.key == key)


@dataclass(frozen=True)
class MessageSizes:
    """Mean sizes in bytes over the 2:1 English/Spanish mix (3 consecutive supporters)."""

    mailer: int  # what the mailer sends, DKIM off
    mailer_dkim: int  # the same with its DKIM-Signature header
    naive: int  # what the floor's naive loop sends


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
        if link_id is None:  # not one of the template's links: left as written
            return url
        return f"{composer.base_url}/c/{composer.signer.click(delivery_id, link_id)}"

    own = composer.base_url + "/"
    return RenderedAlert(
        language=alert.language,
        subject=alert.subject,
        preheader=alert.preheader,
        html=links.rewrite_html(alert.html, own, track),
        text=links.rewrite_text(alert.text, own, track),
    )


def _composers(
    folder: Path, dkim_key: Path | None
) -> tuple[Database, AlertComposer, AlertComposer | None]:
    """A blast's composers (DKIM off, and on when a key is given) over a small real database."""
    prepare(folder, 3)
    db = open_database(f"sqlite:///{folder}/bench.db")
    with db.session() as session:
        blast = find_blast(session, BLAST)
    plain = composer_for(db, settings_for(port=0), blast)
    signed = None
    if dkim_key is not None:
        signed = composer_for(db, settings_for(port=0, dkim_key=dkim_key), blast)
    return db, plain, signed


def _composed(composer: AlertComposer, count: int) -> list[OutgoingMessage]:
    return [composer.compose(i + 1, recipient(i)).message for i in range(count)]


def message_sizes(dkim_key: Path) -> MessageSizes:
    with tempfile.TemporaryDirectory(prefix="mailer-bench-") as tmp:
        db, plain, signed = _composers(Path(tmp), dkim_key)
        assert signed is not None
        mailer = [len(m.data) for m in _composed(plain, 3)]
        mailer_dkim = [len(m.data) for m in _composed(signed, 3)]
        db.dispose()
    template = AlertTemplate(TEMPLATES, TEMPLATE)
    naive = []
    for i in range(3):
        ctx = supporter_context(i)
        alert = template.render(ctx, ctx["supporter"]["language"])
        naive.append(len(naive_message(alert, ctx["supporter"]["email"]).as_bytes()))
    return MessageSizes(
        mailer=round(sum(mailer) / 3),
        mailer_dkim=round(sum(mailer_dkim) / 3),
        naive=round(sum(naive) / 3),
    )


@dataclass(frozen=True)
class TransportRun:
    connections: int
    messages: int
    accepted: int
    seconds: float  # wall time
    cpu_s: float  # CPU of this (single-threaded) process's thread over the same time

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    @property
    def wall_us(self) -> float:
        """Wall time per message; over one connection, the latency of one message."""
        return self.seconds / self.messages * 1e6

    @property
    def cpu_us(self) -> float:
        return self.cpu_s / self.messages * 1e6


def transport(port: int, n: int, connections: int) -> TransportRun:
    """:class:`SmtpTransport` delivering ``n`` pre-composed messages over ``connections``.

    Each connection is opened with one message of its own before the clock
    starts, so the receiver gets ``n + connections`` messages.
    """
    with tempfile.TemporaryDirectory(prefix="mailer-bench-") as tmp:
        db, composer, _ = _composers(Path(tmp), None)
        composed = _composed(composer, 3)
        db.dispose()
    outgoing = [
        replace(composed[i % 3], delivery_id=i + 1, recipient=f"s{i}@example.org")
        for i in range(n + connections)
    ]
    smtp = settings_for(port).smtp

    async def deliver_all() -> TransportRun:
        transports = [SmtpTransport(smtp) for _ in range(connections)]
        try:
            warm = outgoing[n:]
            await asyncio.gather(*(t.deliver(m) for t, m in zip(transports, warm, strict=True)))
            queue = iter(outgoing[:n])

            async def work(t: SmtpTransport) -> int:
                accepted = 0
                for message in queue:
                    outcome = await t.deliver(message)
                    accepted += outcome.verdict is Verdict.SENT
                return accepted

            cpu_before, start = time.thread_time(), time.perf_counter()
            accepted = await asyncio.gather(*(work(t) for t in transports))
            seconds = time.perf_counter() - start
            cpu = time.thread_time() - cpu_before
            return TransportRun(connections, n, sum(accepted), seconds, cpu)
        finally:
            for t in transports:
                await t.close()

    return asyncio.run(deliver_all())


def measure(iterations: int, dkim_key: Path) -> Breakdown:
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
            "naive_mime",
            "floor's MIME: EmailMessage build + as_bytes",
            per_call_us(naive_mime, heavy),
        ),
        Step(
            "render",
            "Jinja render of the alert (subject, preheader, HTML, text)",
            per_call_us(render, iterations * 2),
        ),
    ]

    with tempfile.TemporaryDirectory(prefix="mailer-bench-") as tmp:
        db, composer, signed = _composers(Path(tmp), dkim_key)
        assert signed is not None and signed.dkim is not None
        dkim = signed.dkim
        recipients = [recipient(i) for i in range(iterations)]
        tokens = [composer.signer.unsubscribe(i + 1) for i in range(iterations)]
        alerts = [composer.template.render(c, c["supporter"]["language"]) for c in contexts[:3]]
        tracked = [_tracked(composer, a, 1) for a in alerts]
        plain = [m.data for m in _composed(composer, 3)]
        stuffed = [m.data.replace(b"\r\n", b"\r\n.", 1) for m in _composed(composer, 3)]
        # b"\r\n." above: one line starting with a dot, so dot-stuffing has work to do.

        def tokens_and_links(i: int) -> object:
            composer.signer.unsubscribe(i + 1)
            return _tracked(composer, alerts[i % 3], i + 1)

        def mime(i: int) -> object:
            r = recipients[i]
            return composer.builder.build(
                tracked[i % 3],
                to_name=r.display_name,
                to_address=r.email,
                message_id=new_message_id(1, i + 1, composer.identity.domain),
                unsubscribe_url=f"{composer.base_url}/u/{tokens[i]}",
                unsubscribe_token=tokens[i],
                date=composer.clock(),
            )

        def sign(i: int) -> object:
            return dkim.sign(plain[i % 3])

        ed = DkimSigner(
            domain=dkim.domain,
            selector="ed",
            private_key_pem=ed25519.Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        dual = dkim.with_second(ed)

        digest = hashlib.sha256(b"the signed header fields").digest()

        def rsa_alone(i: int) -> object:  # what no signer can avoid: OpenSSL's signature
            return dkim._sign(digest)  # the signer's own call, with its RSA-2048 key

        def sign_ed(i: int) -> object:
            return ed.sign(plain[i % 3])

        def sign_dual(i: int) -> object:
            return dual.sign(plain[i % 3])

        def smtp_data(i: int) -> object:
            data = normalize_message_line_endings(stuffed[i % 3])
            return PERIOD_REGEX.sub(b"..", data) + b".\r\n"

        steps += [
            Step(
                "links",
                "links rewritten + tracking/unsubscribe tokens signed",
                per_call_us(tokens_and_links, iterations),
            ),
            Step("mime", "MIME: fastmime MessageBuilder.build", per_call_us(mime, iterations)),
            Step(
                "dkim",
                "DKIM sign, RSA-2048 (dkimpy canonicalization + OpenSSL)",
                per_call_us(sign, heavy),
            ),
            Step(
                "rsa",
                "RSA-2048 signature alone (OpenSSL through cryptography)",
                per_call_us(rsa_alone, heavy),
            ),
            Step(
                "dkim_ed25519",
                "DKIM sign, Ed25519 (dkimpy canonicalization + OpenSSL)",
                per_call_us(sign_ed, heavy),
            ),
            Step(
                "dkim_dual",
                "DKIM sign, RSA-2048 and Ed25519 (two signatures)",
                per_call_us(sign_dual, heavy),
            ),
            Step(
                "compose",
                "AlertComposer.compose, all of it, DKIM off",
                per_call_us(lambda i: composer.compose(i + 1, recipients[i]), heavy),
            ),
            Step(
                "compose_dkim",
                "AlertComposer.compose, all of it, DKIM on",
                per_call_us(lambda i: signed.compose(i + 1, recipients[i]), heavy),
            ),
            Step(
                "smtp_data",
                "aiosmtplib DATA prep (unpipelined path): line ends + dot-stuffing regexes",
                per_call_us(smtp_data, iterations),
            ),
        ]
        db.dispose()
    return Breakdown(steps)
