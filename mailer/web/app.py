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
import ipaddress
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from functools import lru_cache
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from mailer.compose.alert import TEST_DELIVERY
from mailer.compose.tokens import TokenSigner
from mailer.config import PetitionsSettings, Settings, TrackingSettings
from mailer.errors import TokenError
from mailer.store import Database, Delivery, Open, Supporter, SupporterStatus
from mailer.store.models import utcnow
from mailer.supporters.columns import masked_address
from mailer.supporters.suppression import unsubscribe_delivery
from mailer.web.actions import ActionPages
from mailer.web.admin import admin_routes
from mailer.web.framing import NoFraming
from mailer.web.recorder import ClickBatcher, GroupWriter

ONE_CLICK_BODY = "List-Unsubscribe=One-Click"
_NO_CACHE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
_REDIRECT_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-length", b"0"),
]


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


PAGE_LANGUAGES = ("en", "es")
MAX_FORM_BYTES = 4096  # the unsubscribe form and the RFC 8058 body are a few bytes


def page_language(language: str) -> str:
    """The supporter's language when the pages speak it, else English."""
    return language if language in PAGE_LANGUAGES else "en"


PIXEL = base64.b64decode(b"R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")  # 1x1 GIF


def truncate_ip(address: str) -> str:
    """An IPv4 address cut to its /24, an IPv6 address to its /48 (never the host)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return ""
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)


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
) -> Starlette:
    signer = TokenSigner(secret_key)
    tracking = tracking or TrackingSettings()
    writer = GroupWriter(db)
    actions = ActionPages(
        db,
        secret_key,
        organization_name=organization_name,
        tracking=tracking,
        petitions=petitions,
        clock=clock,
    )
    clicks = ClickBatcher(
        db,
        tracking.scanner_window,
        action_path=actions.action_path,
        dedup_window=tracking.click_dedup_window,
    )
    pages = Environment(
        loader=PackageLoader("mailer.web", "templates"), autoescape=select_autoescape(["html"])
    )

    def page(name: str, status: int = 200, **context: object) -> HTMLResponse:
        html = pages.get_template(name).render(organization_name=organization_name, **context)
        return HTMLResponse(html, status_code=status, headers=_NO_CACHE)

    def not_found() -> HTMLResponse:
        return page("not_found.html", status=404)

    async def click(request: Request) -> Response:
        try:
            token = signer.read_click(request.path_params["token"])
        except TokenError:
            return not_found()
        ip = ""
        if tracking.store_ip == "truncated" and request.client is not None:
            ip = truncate_ip(request.client.host)
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
        return Response(PIXEL, media_type="image/gif", headers=_NO_CACHE)

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
        # urlencoded or multipart); the body only tells our own page's button apart.
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                return PlainTextResponse("request body too large", status_code=413)
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
