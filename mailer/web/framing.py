"""No page of ours inside another site's frame (clickjacking), set in one place.

Every response of the app passes :class:`NoFraming`: one without a
``Content-Security-Policy`` gets ``frame-ancestors 'none'``; one with a policy
that does not name its frame ancestors gets ``frame-ancestors 'none'``
added; and ``X-Frame-Options`` (for browsers without CSP level 2) says
``DENY``, or ``SAMEORIGIN`` where the policy allows our own pages to frame
it (the admin's message preview, shown inside the blast page).
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

NONE = "frame-ancestors 'none'"


def framing_headers(policy: str) -> tuple[str, str]:
    """(Content-Security-Policy, X-Frame-Options) for a response with ``policy`` ("": none)."""
    if "frame-ancestors" not in policy:
        policy = f"{policy.rstrip('; ')}; {NONE}" if policy.strip() else NONE
    return policy, "SAMEORIGIN" if "frame-ancestors 'self'" in policy else "DENY"


class NoFraming:
    """ASGI middleware adding the headers of :func:`framing_headers` to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                policy, frame_options = framing_headers(headers.get("content-security-policy", ""))
                headers["Content-Security-Policy"] = policy
                headers["X-Frame-Options"] = frame_options
            await send(message)

        await self.app(scope, receive, send_with_headers)
