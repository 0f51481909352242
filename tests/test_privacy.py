"""What a click or a signature may keep of a request's IP address (``truncate_ip``), alone.

With ``tracking.store_ip = "truncated"`` no more than the network the address
came from is kept (IPv4 /24, IPv6 /48), never the address itself.
"""

from __future__ import annotations

import pytest

from mailer.web.common import truncate_ip


@pytest.mark.parametrize(
    ("address", "kept"),
    [
        ("203.0.113.77", "203.0.113.0"),
        ("2001:db8:1234:5678::1", "2001:db8:1234::"),
        ("not-an-ip", ""),
    ],
)
def test_ip_truncation(address: str, kept: str) -> None:
    assert truncate_ip(address) == kept
