"""The public HTTP app (Starlette): what supporters reach from an alert.

- ``GET /c/<token>``: record the click, then ``302`` to the link recorded for
  that token's blast. The click is committed before the redirect is answered,
  in group commits shared with concurrent requests (:mod:`mailer.web.recorder`).
  A click within ``tracking.scanner_window`` seconds of sending is flagged as a
  suspected link scanner; no IP address is kept unless ``tracking.store_ip``
  asks, and then only its network part.
- ``GET /o/<token>``: the open-tracking pixel (only put in messages with
  ``tracking.opens``).
  A malformed, altered or foreign token gets ``404`` and records nothing; the
  target is never taken from the request (no open redirect).
- ``GET /u/<token>``: a small page with a confirm button, in the supporter's
  language (English and Spanish; English for any other).
- ``POST /u/<token>``: unsubscribe. Also the RFC 8058 one-click request (body
  ``List-Unsubscribe=One-Click``), answered ``200`` with no redirect as the RFC
  asks.
- ``GET /healthz``: ``ok`` when the database answers.
- ``/a/<token>`` and ``/p/<slug>``: petition action pages
  (:mod:`mailer.web.actions`); a click on the call to action of a blast
  linked to a petition is redirected to the recipient's ``/a/<token>``.

Handlers are plain functions, which Starlette runs in its thread pool, so a
database write never blocks the event loop.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from functools import lru_cache
from urllib.parse import quote

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from mailer.compose.alert import TEST_DELIVERY
from mailer.compose.tokens import TokenSigner
from mailer.config import PetitionsSettings, Settings, TrackingSettings
from mailer.errors import TokenError
from mailer.petitions.optin import ConfirmationMailer
from mailer.store import Database, Delivery, Open, Supporter, SupporterStatus
from mailer.store.models import utcnow
from mailer.supporters.columns import masked_address
from mailer.supporters.suppression import unsubscribe_delivery
from mailer.web.actions import ActionPages
from mailer.web.admin import admin_routes
from mailer.web.common import (
    PUBLIC_HEADERS,
    REDIRECT_RAW_HEADERS,
    BodyError,
    PublicPages,
    kept_ip,
    page_language,
    read_body,
)
from mailer.web.framing import NoFraming
from mailer.web.recorder import ClickBatcher, GroupWriter

ONE_CLICK_BODY = "List-Unsubscribe=One-Click"
MAX_UNSUBSCRIBE_BYTES = 4096  # the unsubscribe form and the RFC 8058 body are a few bytes
_REDIRECT_HEADERS = [*REDIRECT_RAW_HEADERS, (b"content-length", b"0")]


@lru_cache(maxsize=4096)
def _location(url: str) -> bytes:
    # As Starlette's RedirectResponse spells it; a blast's few links are quoted once.
    return quote(url, safe=":/%#?=@[]!$&'()*+,;").encode("latin-1")


class _ClickRedirect(Response):
    """The click handler's ``302``: RedirectResponse's bytes, built without its per-request
    header parsing (the click endpoint is the hot path; see docs/performance.md)."""

    def __init__(self, url: str) -> None:
        self.status_code = 302
        self.body = b""
        self.background = None
        self.raw_headers = [(b"location", _location(url)), *_REDIRECT_HEADERS]


PIXEL = base64.b64decode(b"R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")  # 1x1 GIF


def app_for(db: Database, settings: Settings) -> Starlette:
    """The app as the settings describe it (what `mailer web`, `run` and `demo` serve)."""
    settings.require("security.secret_key")
    return create_app(
        db,
        settings.security.secret_key,
        organization_name=settings.organization.name,
        tracking=settings.tracking,
        petitions=settings.petitions,
        extra_routes=admin_routes(db, settings),
        confirmations=ConfirmationMailer(settings) if settings.sender.address else None,
    )


def create_app(
    db: Database,
    secret_key: str,
    *,
    organization_name: str = "",
    tracking: TrackingSettings | None = None,
    clock: Callable[[], datetime] = utcnow,
    petitions: PetitionsSettings | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    confirmations: ConfirmationMailer | None = None,
) -> Starlette:
    signer = TokenSigner(secret_key)
    tracking = tracking or TrackingSettings()
    writer = GroupWriter(db)
    pages = PublicPages(organization_name)
    actions = ActionPages(
        db,
        secret_key,
        pages,
        tracking=tracking,
        petitions=petitions,
        clock=clock,
        confirmations=confirmations,
    )
    clicks = ClickBatcher(
        db,
        tracking.scanner_window,
        action_path=actions.action_path,
        dedup_window=tracking.click_dedup_window,
    )
    page, not_found = pages.render, pages.not_found

    async def click(request: Request) -> Response:
        try:
            token = signer.read_click(request.path_params["token"])
        except TokenError:
            return not_found()
        ip = kept_ip(request, tracking.store_ip)
        target = await clicks.record(token.delivery_id, token.link_id, clock(), ip)
        if target is None:
            return not_found()
        return _ClickRedirect(target)

    def pixel(request: Request) -> Response:
        try:
            delivery_id = signer.read_open(request.path_params["token"])
        except TokenError:
            return not_found()
        with db.session() as session:
            delivery = session.get(Delivery, delivery_id)
        if delivery is None:
            return not_found()
        writer.submit(Open(blast_id=delivery.blast_id, delivery_id=delivery_id, opened_at=clock()))
        return Response(PIXEL, media_type="image/gif", headers=PUBLIC_HEADERS)

    def _delivery_for(raw: str) -> tuple[Delivery, Supporter] | None:
        try:
            token = signer.read_unsubscribe(raw)
        except TokenError:
            return None
        with db.session() as session:
            delivery = session.get(Delivery, token.delivery_id)
            if delivery is None:
                return None
            supporter = session.get(Supporter, delivery.supporter_id)
            assert supporter is not None
            return delivery, supporter

    def _is_test(raw: str) -> bool:
        """A test send's unsubscribe link: it shows the page and changes nothing."""
        with contextlib.suppress(TokenError):
            return signer.read_unsubscribe(raw).delivery_id == TEST_DELIVERY
        return False

    def unsubscribe_page(request: Request) -> Response:
        if _is_test(request.path_params["token"]):
            return page("unsubscribe.html", test=True, action=request.url.path, lang="en")
        found = _delivery_for(request.path_params["token"])
        if found is None:
            return not_found()
        _, supporter = found
        return page(
            "unsubscribe.html",
            email=masked_address(supporter.email),
            done=supporter.status == SupporterStatus.UNSUBSCRIBED,
            action=request.url.path,
            lang=page_language(supporter.language),
        )

    async def unsubscribe_post(request: Request) -> Response:
        # Any POST here unsubscribes (RFC 8058 one-click sends "List-Unsubscribe=One-Click",
        # urlencoded or multipart), so the body is not parsed as a form: whatever its
        # encoding, it only tells our own page's button ("confirm") apart.
        try:
            body = await read_body(request, MAX_UNSUBSCRIBE_BYTES)
        except BodyError as exc:
            return PlainTextResponse(exc.message, status_code=exc.status)
        via = "page" if b"confirm" in body else "one-click"
        raw = request.path_params["token"]
        return await run_in_threadpool(_unsubscribe, raw, via)

    def _unsubscribe(raw: str, via: str) -> Response:
        if _is_test(raw):
            return page("unsubscribed.html", test=True, lang="en")
        try:
            token = signer.read_unsubscribe(raw)
        except TokenError:
            return not_found()
        with db.session() as session:
            delivery = session.get(Delivery, token.delivery_id)
            if delivery is None:
                return not_found()
            unsubscribe_delivery(session, delivery, via=via, now=clock())
            supporter = session.get(Supporter, delivery.supporter_id)
            assert supporter is not None
            email, lang = masked_address(supporter.email), page_language(supporter.language)
        return page("unsubscribed.html", email=email, lang=lang)

    def health(request: Request) -> Response:
        with db.session() as session:
            session.execute(text("SELECT 1"))
        return PlainTextResponse("ok")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        writer.start()
        clicks.start()
        try:
            yield
        finally:
            clicks.stop()
            writer.stop()

    return Starlette(
        lifespan=lifespan,
        middleware=[Middleware(NoFraming)],  # frame-ancestors and X-Frame-Options, everywhere
        routes=[
            Route("/c/{token}", click, methods=["GET"]),
            Route("/o/{token}", pixel, methods=["GET"]),
            Route("/u/{token}", unsubscribe_page, methods=["GET"]),
            Route("/u/{token}", unsubscribe_post, methods=["POST"]),
            Route("/healthz", health, methods=["GET"]),
            *actions.routes(),
            *extra_routes,
        ],
    )
