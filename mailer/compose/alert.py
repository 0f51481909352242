"""One blast's alert, composed for one supporter: render, track links, build MIME, sign.

The MIME is made by :class:`~mailer.compose.fastmime.MessageBuilder`, which
prepares what every message of the blast shares once; DKIM, when configured,
signs the finished bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from mailer.compose import links
from mailer.compose.bodies import EncodedBodies
from mailer.compose.dkim import DkimSigner
from mailer.compose.fastmime import MessageBuilder
from mailer.compose.message import Identity, new_message_id
from mailer.compose.splice import Splicer, with_pixel
from mailer.compose.templates import AlertTemplate, RenderedAlert
from mailer.compose.tokens import TokenSigner

TEST_DELIVERY = 0  # the delivery id of previews, checks and test sends: nothing is counted


class SupporterData(Protocol):
    """What a recipient is made from: a stored supporter, as far as templates see it."""

    email: str
    first_name: str
    last_name: str
    zip: str
    region: str
    language: str
    custom: dict[str, Any]


class LinkIds(Protocol):
    """The ids of a blast's links, registered from its template before sending."""

    def link_id(self, url: str) -> int | None:
        """The id of a registered link; None for any other URL (left untracked)."""
        ...

    def register(self, urls: Iterable[str]) -> None:
        """Record ``urls`` as the blast's links."""
        ...


@dataclass(frozen=True)
class Recipient:
    """What the template may know of a supporter."""

    email: str
    first_name: str = ""
    last_name: str = ""
    zip: str = ""
    region: str = ""
    language: str = "en"
    custom: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, supporter: SupporterData) -> Recipient:
        return cls(
            email=supporter.email,
            first_name=supporter.first_name,
            last_name=supporter.last_name,
            zip=supporter.zip,
            region=supporter.region,
            language=supporter.language,
            custom=dict(supporter.custom or {}),
        )

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    def as_context(self) -> dict[str, Any]:
        return {
            "email": self.email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "zip": self.zip,
            "region": self.region,
            "language": self.language,
            "custom": dict(self.custom),
        }


@dataclass(frozen=True)
class OutgoingMessage:
    delivery_id: int
    envelope_sender: str
    recipient: str
    message_id: str
    data: bytes
    # Every line end of ``data`` is CRLF and it ends with one, as the composer builds
    # every message: the transport then skips checking (three passes over the bytes).
    crlf: bool = False


@dataclass(frozen=True)
class Composed:
    """A finished message plus the rendered alert it was built from (for previews)."""

    message: OutgoingMessage
    alert: RenderedAlert


class AlertComposer:
    """Everything that is the same for every message of one blast, prepared once."""

    def __init__(
        self,
        *,
        template: AlertTemplate,
        blast_id: int,
        blast_name: str,
        cta_url: str,
        identity: Identity,
        organization_name: str,
        postal_address: str,
        base_url: str,
        signer: TokenSigner,
        link_ids: LinkIds,
        clock: Callable[[], datetime],
        dkim: DkimSigner | None = None,
        opens: bool = False,
    ) -> None:
        self.template = template
        self.blast_id = blast_id
        self.identity = identity
        self.base_url = base_url.rstrip("/")
        self.signer = signer
        self.link_ids = link_ids
        self.clock = clock
        self.dkim = dkim
        self.opens = opens
        self.builder = MessageBuilder(identity)
        self._shared: dict[str, Any] = {
            "organization": {"name": organization_name, "postal_address": postal_address},
            "sender": {"name": identity.from_name, "address": identity.from_address},
            "blast": {"name": blast_name},
            "cta_url": cta_url,
        }
        self._splicer: Splicer | None = None

    def _spliced(
        self, delivery_id: int, recipient: Recipient, unsubscribe_url: str
    ) -> tuple[RenderedAlert, EncodedBodies] | None:
        """The tracked alert spliced from the blast's once-rendered bodies, when exact,
        and its parts encoded from the bodies' once-encoded lines.

        The splicer is made at the first message, after the blast's links are
        registered (see :mod:`mailer.compose.splice`).
        """
        if self._splicer is None:
            self._splicer = Splicer(
                self.template,
                self._shared,
                base_url=self.base_url,
                link_id=self.link_ids.link_id,
                opens=self.opens,
                boundary=self.builder.boundary,
            )
        return self._splicer.alert(
            recipient.as_context(),
            unsubscribe_url,
            lambda link_id: f"{self.base_url}/c/{self.signer.click(delivery_id, link_id)}",
            lambda: self.signer.open(delivery_id),
        )

    def _with_pixel(self, html: str, delivery_id: int) -> str:
        """With tracking.opens: a 1x1 image at /o/<token> just before </body>."""
        if not self.opens:
            return html
        return with_pixel(html, self.base_url, self.signer.open(delivery_id))

    def render(self, recipient: Recipient, unsubscribe_url: str) -> RenderedAlert:
        """The recipient's alert as the template wrote it, links not yet tracked."""
        context = dict(
            self._shared, supporter=recipient.as_context(), unsubscribe_url=unsubscribe_url
        )
        return self.template.render(context, recipient.language)

    def template_links(self) -> list[str]:
        """The trackable links the template itself writes, in every language.

        Rendered for sample recipients with and without a first name, whose
        values contain no URL, so what is found comes from the template (and
        the blast's shared values such as ``cta_url``), never from supporter
        data. A link built from supporter values differs per recipient and is
        not among them: it is sent untracked.
        """
        own = self.base_url + "/"
        found: dict[str, None] = {}
        for language in self.template.languages:
            for first_name in ("Alex", ""):
                sample = Recipient(
                    email="sample@example.org", first_name=first_name, language=language
                )
                alert = self.render(sample, f"{own}u/x")
                for url in links.html_links(alert.html) + links.text_links(alert.text):
                    if links.is_trackable(url, own):
                        found[url] = None
        return list(found)

    def register_links(self) -> None:
        """Register the template's links as the blast's (see :meth:`template_links`)."""
        self.link_ids.register(self.template_links())

    def _tracked(
        self, delivery_id: int, recipient: Recipient, unsubscribe_url: str, *, test: bool
    ) -> RenderedAlert:
        """The full render: the recipient's alert rendered, then its links tracked."""
        alert = self.render(recipient, unsubscribe_url)

        def track(url: str) -> str:
            link_id = self.link_ids.link_id(url)
            if link_id is None:  # not one of the template's links: left as written
                return url
            return f"{self.base_url}/c/{self.signer.click(delivery_id, link_id)}"

        own = self.base_url + "/"
        return RenderedAlert(
            language=alert.language,
            subject=f"[TEST] {alert.subject}" if test else alert.subject,
            preheader=alert.preheader,
            html=self._with_pixel(links.rewrite_html(alert.html, own, track), delivery_id),
            text=links.rewrite_text(alert.text, own, track),
        )

    def compose(
        self, delivery_id: int, recipient: Recipient, *, test: bool = False, splice: bool = True
    ) -> Composed:
        """One recipient's message. A ``test`` message says so in its subject and in an
        ``X-Mailer-Test`` header, and its links (delivery 0) are not counted.

        The bodies are spliced from the blast's once-rendered ones when that is
        exact (:mod:`mailer.compose.splice`); ``splice=False`` always renders in
        full (the reference the splice is tested against)."""
        unsubscribe_token = self.signer.unsubscribe(delivery_id)
        unsubscribe_url = f"{self.base_url}/u/{unsubscribe_token}"
        tracked = bodies = None
        if splice and not test:
            spliced = self._spliced(delivery_id, recipient, unsubscribe_url)
            if spliced is not None:
                tracked, bodies = spliced
        if tracked is None:
            tracked = self._tracked(delivery_id, recipient, unsubscribe_url, test=test)
        message_id = new_message_id(self.blast_id, delivery_id, self.identity.domain)
        data = self.builder.build(
            tracked,
            to_name=recipient.display_name,
            to_address=recipient.email,
            message_id=message_id,
            unsubscribe_url=unsubscribe_url,
            unsubscribe_token=unsubscribe_token,
            date=self.clock(),
            bodies=bodies,
        )
        if test:
            data = b"X-Mailer-Test: yes\r\n" + data
        if self.dkim is not None:
            data = self.dkim.sign(data, crlf=True)  # the builder's: CRLF throughout
        out = OutgoingMessage(
            delivery_id=delivery_id,
            envelope_sender=self.identity.envelope_sender(
                self.signer.bounce(delivery_id) if self.identity.verp else ""
            ),
            recipient=recipient.email,
            message_id=message_id,
            data=data,
            crlf=True,  # fastmime and the DKIM header: CRLF only (test_compose holds it)
        )
        return Composed(out, tracked)
