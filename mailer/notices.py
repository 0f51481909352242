"""Notices for the admin pages: only text the server wrote, shown once after an action.

After a form's action the browser is sent back to a page (303) that says
what happened ("User bo disabled."). The text travels in a short-lived
cookie sealed with an HMAC of ``security.secret_key``, not in the link: a
notice in a URL let anyone make the admin's own pages show any sentence
("your session expired, sign in at ..."). A cookie planted from a sibling
domain cannot carry a valid seal either.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

COOKIE = "mailer_notice"
MAX_AGE = 60  # seconds: it is read by the page the redirect leads to
MAX_CHARS = 300
_PURPOSE = b"mailer admin notice v1|"


def _tag(key: str, data: bytes) -> str:
    mac = hmac.new(key.encode(), _PURPOSE + data, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def seal(key: str, text: str) -> str:
    """``text`` (cut to :data:`MAX_CHARS`) as a cookie value only ``key`` can have made."""
    data = text[:MAX_CHARS].encode()
    return f"{base64.urlsafe_b64encode(data).decode().rstrip('=')}.{_tag(key, data)}"


def unseal(key: str, value: str) -> str:
    """The text of a value :func:`seal` made with ``key``; "" for anything else."""
    encoded, dot, tag = value.partition(".")
    if not dot or not tag or "." in tag:
        return ""
    try:
        data = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        text = data.decode()
    except (binascii.Error, ValueError):
        return ""
    if not hmac.compare_digest(_tag(key, data), tag):
        return ""
    return text
