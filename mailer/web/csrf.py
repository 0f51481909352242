"""CSRF protection for the public forms: a signed double-submit cookie.

A page with a form sets a random value in the ``mailer_csrf`` cookie (when the
browser has none) and writes ``HMAC(key, cookie + form path)`` into the form.
A POST is accepted only when the form's value is that HMAC of the cookie it
arrives with, for the path it is posted to. Another site can make a browser
post to us, but it can neither read our cookie nor compute the HMAC, so it
cannot fill the field in. The key is derived from ``security.secret_key``
for this purpose only. The cookie is ``HttpOnly`` and ``SameSite=Lax``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from starlette.requests import Request
from starlette.responses import Response

COOKIE = "mailer_csrf"
FIELD = "csrf"
_COOKIE_VALUE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # 32 random bytes, base64url


class Csrf:
    def __init__(self, secret: str) -> None:
        self._key = hmac.new(secret.encode(), b"mailer csrf key", hashlib.sha256).digest()

    def _token(self, cookie: str, path: str) -> str:
        tag = hmac.new(self._key, f"{cookie}|{path}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(tag).rstrip(b"=").decode("ascii")

    def new_cookie(self, current: str = "") -> str:
        """``current`` when it looks like one of our cookie values, else a new random one."""
        return current if _COOKIE_VALUE.match(current) else secrets.token_urlsafe(32)

    def form_token(self, cookie: str, path: str) -> str:
        """The form field that goes with ``cookie`` for a form posted to ``path``."""
        return self._token(cookie, path)

    def matches(self, cookie: str, path: str, token: str) -> bool:
        """Whether ``token`` is the form field made for ``cookie`` and ``path``."""
        if not _COOKIE_VALUE.match(cookie) or not token:
            return False
        return hmac.compare_digest(token.encode(), self._token(cookie, path).encode())

    def issue(self, request: Request) -> tuple[str, str]:
        """(cookie value, form token) for a form posted back to ``request``'s path."""
        cookie = request.cookies.get(COOKIE, "")
        if not _COOKIE_VALUE.match(cookie):
            cookie = secrets.token_urlsafe(32)
        return cookie, self._token(cookie, request.url.path)

    def set_cookie(self, response: Response, request: Request, cookie: str) -> None:
        if request.cookies.get(COOKIE) == cookie:
            return
        response.set_cookie(
            COOKIE,
            cookie,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path="/",
        )

    def valid(self, request: Request, token: str) -> bool:
        """Whether ``token`` (the form's field) matches the request's cookie and path."""
        cookie = request.cookies.get(COOKIE, "")
        if not _COOKIE_VALUE.match(cookie) or not token:
            return False
        return hmac.compare_digest(token.encode(), self._token(cookie, request.url.path).encode())
