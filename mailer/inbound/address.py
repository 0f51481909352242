"""The bounced address named in a report, cleaned, or nothing.

Reports name the recipient in many ways: ``rfc822; <user@example.org>``,
``"Name" <user@example.org>``, ``user@example.org:`` (qmail), ``<user@example.org>...``
(Sendmail), ``mailto:user@example.org``. What is kept is the bare
``local@domain``; refused are pipe commands and file deliveries
(``|/usr/local/bin/...``, ``/var/mail/...``), addresses without a domain,
``mailto:`` links with parameters (a list's own addresses in a footer), and
anything with spaces or control characters.
"""

from __future__ import annotations

import re

_TYPED = re.compile(r"^\s*(?:rfc822|utf-8|x-[\w-]+)\s*;\s*", re.IGNORECASE)
_ADDRESS = re.compile(
    r"(?<![\w.!#$%&'*+/=?^`{|}~-])"
    r"((?:\"[^\"\\\s]{1,62}\"|[\w.!#$%&'*+/=?^`{}~-]{1,64})@[A-Za-z0-9\u00a0-\uffff](?:[A-Za-z0-9\u00a0-\uffff.-]{0,253}"
    r"[A-Za-z0-9\u00a0-\uffff])?)"
)


def _one(value: str) -> str:
    value = _TYPED.sub("", value.strip())
    if not value or value.startswith(("|", "/")) or "|/" in value:
        return ""
    if "<" in value:
        inner = re.search(r"<([^<>]*)>", value)
        value = inner.group(1) if inner else value
    value = value.strip().strip("<>'()[],;:. \t")
    if value.count('"') == 1:
        value = value.replace('"', "")
    if value.lower().startswith("mailto:"):
        if "?" in value:
            return ""
        value = value[7:]
    m = _ADDRESS.search(value)
    if m is None:
        return ""
    address = m.group(1).strip(".")
    local, _, domain = address.rpartition("@")
    if not local or ("." not in domain and domain.lower() != "localhost"):
        return ""
    if local.startswith("|") or local.startswith("/"):
        return ""
    return f"{local}@{domain.rstrip('.')}"


def recipient_address(*values: str) -> str:
    """The first clean address among ``values`` (e.g. Final-, then Original-Recipient)."""
    for value in values:
        if address := _one(value):
            return address
    return ""
