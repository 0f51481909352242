"""What every part of the web app shares, defined once.

- **Request bodies** (:func:`read_body`, :func:`read_form`), for the public
  pages, the petition pages, the admin pages and the JSON API alike:

  * a body is read up to a cap (:data:`MAX_BODY_BYTES` unless the caller
    asks for less); a declared ``Content-Length`` over the cap is refused
    before anything is read, and a streamed body as soon as it passes the cap:
    ``413``;
  * a form is urlencoded UTF-8 text. Bytes that are not UTF-8, or a
    percent-escape that does not decode as UTF-8 (``%FF``), are refused with
    ``400`` "the form is not UTF-8": nothing is guessed or replaced, so what
    is stored is what was sent;
  * each field may appear once. A repeated field is refused with ``400``
    naming it, unless the handler declares it repeatable (the admin's list
    checkboxes), and then :meth:`Form.all` gives every value in order. No
    handler can pick the first value where a proxy in front picked the last;
  * at most :data:`MAX_FIELDS` fields (``400``).

  Every refusal is a :class:`BodyError` carrying the status and a message;
  the caller answers it in its own kind (text for pages, JSON for the API).
- **Page templates**: one Jinja environment (:func:`page_templates`, autoescape
  on) for the public pages, the petition pages and the admin, and
  :class:`PublicPages` for the pages supporters see.
- **Response headers**: every header set the app sends, in one place
  (:data:`PUBLIC_HEADERS`, :data:`ADMIN_HEADERS`, :data:`PREVIEW_HEADERS`...).
- **Languages** the pages speak, and which one a request gets.
- **Client addresses**: :func:`truncate_ip`, :func:`kept_ip` (what
  ``tracking.store_ip`` lets us keep). Per-client rate limits (and how a
  client is keyed behind proxies and on IPv6) are in :mod:`mailer.clients`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import parse_qsl

from jinja2 import Environment, PackageLoader
from starlette.requests import Request
from starlette.responses import HTMLResponse

# -- request bodies ----------------------------------------------------------------------

MAX_BODY_BYTES = 64 * 1024  # the largest form (a petition message) is a few KB
MAX_FIELDS = 500  # more than any form has (the new-blast form has one per mailing list)


class BodyError(Exception):
    """A request body refused: ``status`` (400 or 413) and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The whole request body, or :class:`BodyError` (413) once it is over ``limit`` bytes."""
    too_large = BodyError(413, f"the request body is too large (at most {limit} bytes)")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


class Form(Mapping[str, str]):
    """A posted form: each field's value; :meth:`all` for a field declared repeatable."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        self._fields = fields

    def __getitem__(self, name: str) -> str:
        return self._fields[name][0]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def all(self, name: str) -> list[str]:
        """Every value of ``name`` in the order sent (none when it was not sent)."""
        return list(self._fields.get(name, []))


def parse_form(body: bytes, *, repeatable: Collection[str] = ()) -> Form:
    """An urlencoded UTF-8 body as a :class:`Form` (the rules are in the module docstring)."""
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=MAX_FIELDS)
    except UnicodeDecodeError:
        raise BodyError(400, "the form is not UTF-8") from None
    except ValueError:
        raise BodyError(400, f"the form has more than {MAX_FIELDS} fields") from None
    fields: dict[str, list[str]] = {}
    for name, value in pairs:
        values = fields.setdefault(name, [])
        if values and name not in repeatable:
            raise BodyError(400, f"the form gives the field {name!r} more than once")
        values.append(value)
    return Form(fields)


async def read_form(
    request: Request, *, limit: int = MAX_BODY_BYTES, repeatable: Collection[str] = ()
) -> Form:
    """The posted form of ``request``, read within ``limit`` bytes, or :class:`BodyError`."""
    return parse_form(await read_body(request, limit), repeatable=repeatable)


# -- response headers --------------------------------------------------------------------
# Every header set the app sends is here, so a security header is added in one place.

NO_STORE = {"Cache-Control": "no-store"}
# Supporters' pages carry tokens in their URLs: never cached, never sent on as a Referer.
PUBLIC_HEADERS = {**NO_STORE, "Referrer-Policy": "no-referrer"}
# The same for the click redirect, spelled as raw ASGI headers (the hot path).
REDIRECT_RAW_HEADERS = [(k.lower().encode(), v.encode()) for k, v in PUBLIC_HEADERS.items()]
# Admin pages: nothing from elsewhere, no inline script (only our own files, such as the
# studio's audience count, which fetches from our own origin), not framed by other sites.
ADMIN_CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; "
    "img-src 'self' data:; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
ADMIN_HEADERS = {
    **NO_STORE,
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": ADMIN_CSP,
}
# The message preview: the alert's own inline styles and remote images, no scripts,
# and only inside our own blast page (which also sandboxes it).
PREVIEW_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
)
PREVIEW_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": PREVIEW_CSP,
    "X-Content-Type-Options": "nosniff",
}
API_DOCS_HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'self'"}


# -- page templates ----------------------------------------------------------------------


@cache
def page_templates() -> Environment:
    """The Jinja environment of the app's own pages (``mailer/web/templates``), escaping all.

    One for the whole process: templates are compiled once, and rendering is
    thread-safe. (Organizers' email templates have their own sandboxed
    environment in :mod:`mailer.compose`.)
    """
    return Environment(loader=PackageLoader("mailer.web", "templates"), autoescape=True)


@dataclass(frozen=True)
class PublicPages:
    """Renders the pages supporters see, with the organization's name and no-cache headers."""

    organization_name: str = ""
    env: Environment = field(default_factory=page_templates)

    def render(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(
            organization_name=self.organization_name, **context
        )
        return HTMLResponse(html, status_code=status, headers=PUBLIC_HEADERS)

    def not_found(self) -> HTMLResponse:
        return self.render("not_found.html", 404)


# -- languages ---------------------------------------------------------------------------

LANGUAGES = ("en", "es")  # the languages the pages speak; English is the fallback


def page_language(language: str) -> str:
    """A supporter's language when the pages speak it, else English."""
    return language if language in LANGUAGES else "en"


def request_language(request: Request) -> str:
    """``?lang=`` when the pages speak it, else the browser's first language they speak."""
    asked = request.query_params.get("lang", "")
    if asked in LANGUAGES:
        return asked
    for part in request.headers.get("accept-language", "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return "en"


# -- client addresses --------------------------------------------------------------------


def truncate_ip(address: str) -> str:
    """An IPv4 address cut to its /24, an IPv6 address to its /48 (never the host)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return ""
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)


def kept_ip(request: Request, store_ip: str) -> str:
    """What ``tracking.store_ip`` lets us keep of the client's address: nothing, or its network."""
    if store_ip != "truncated" or request.client is None:
        return ""
    return truncate_ip(request.client.host)
