"""Finding the links in a rendered alert and replacing them with tracking links.

Every ``href`` of an ``<a>`` element in the HTML part and every bare
``http(s)://`` URL in the text part is replaced, except links that already
point at the mailer itself (the unsubscribe link) and non-web schemes
(``mailto:``, ``tel:``, ``#fragment``). The replacement is decided by a
callback, so this module knows nothing of tokens or the database.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable

# An <a ...> start tag's href attribute, quoted with " or '. Autoescaped Jinja output
# always quotes attribute values, so unquoted hrefs are not looked for.
_HTML_HREF = re.compile(
    r"""(<a\b[^>]*?\bhref\s*=\s*)(?P<q>["'])(?P<url>.*?)(?P=q)""", re.IGNORECASE | re.DOTALL
)
HTML_HREF = _HTML_HREF  # what the splice (mailer.compose.splice) must agree with
# A URL in plain text ends at whitespace or at characters that commonly close it.
_TEXT_URL = re.compile(r"""https?://[^\s<>"'\])}]+""", re.IGNORECASE)
_TRAILING = ".,;:!?"


def is_trackable(url: str, own_prefix: str) -> bool:
    lowered = url.strip().lower()
    if not lowered.startswith(("http://", "https://")):
        return False
    return not (own_prefix and url.startswith(own_prefix))


def html_links(body: str) -> list[str]:
    return [html.unescape(m.group("url")).strip() for m in _HTML_HREF.finditer(body)]


def text_links(body: str) -> list[str]:
    return [m.group(0).rstrip(_TRAILING) for m in _TEXT_URL.finditer(body)]


def rewrite_html(body: str, own_prefix: str, replace: Callable[[str], str]) -> str:
    def sub(m: re.Match[str]) -> str:
        url = html.unescape(m.group("url")).strip()
        if not is_trackable(url, own_prefix):
            return m.group(0)
        q = m.group("q")
        return f"{m.group(1)}{q}{html.escape(replace(url), quote=True)}{q}"

    return _HTML_HREF.sub(sub, body)


def rewrite_text(body: str, own_prefix: str, replace: Callable[[str], str]) -> str:
    def sub(m: re.Match[str]) -> str:
        whole = m.group(0)
        url = whole.rstrip(_TRAILING)
        tail = whole[len(url) :]
        if not is_trackable(url, own_prefix):
            return whole
        return replace(url) + tail

    return _TEXT_URL.sub(sub, body)
