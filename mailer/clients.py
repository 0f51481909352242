"""Who a request comes from, for rate limits: client keys, proxies, per-client limits.

- The client address is the socket's peer, unless that peer is one of
  ``web.trusted_proxies``: only then does uvicorn replace it with the
  address in ``X-Forwarded-For`` (:func:`proxy_options`). Nothing is
  trusted by default, so a client cannot pick its own address.
- An IPv4 client is limited by its address; an IPv6 client by its /64, the
  smallest network a home or a cloud host is given, so rotating through the
  addresses of one's own network does not get more tries.
- A :class:`ClientLimit` is a moving window per client key, in the memory
  of one web process (the ``limits`` package).
"""

from __future__ import annotations

import ipaddress
import math
import time
from typing import Any

from limits import parse as parse_limit
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from mailer.errors import ConfigError


def client_key(host: str) -> str:
    """The key a client is limited under: its IPv4 address, or its IPv6 /64 network."""
    try:
        address = ipaddress.ip_address(host.strip())
    except ValueError:
        return "unknown"  # no usable peer address: such clients share one budget
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def proxy_options(trusted_proxies: str) -> dict[str, Any]:
    """uvicorn's options for ``web.trusted_proxies`` (comma-separated addresses or networks).

    Empty: forwarded headers are ignored (uvicorn would otherwise believe
    them from 127.0.0.1).
    """
    trusted = ",".join(p.strip() for p in trusted_proxies.split(",") if p.strip())
    if not trusted:
        return {"proxy_headers": False, "forwarded_allow_ips": ""}
    return {"proxy_headers": True, "forwarded_allow_ips": trusted}


def check_proxies(key: str, value: str) -> None:
    """Raise :class:`ConfigError` naming ``key`` unless ``value`` lists addresses or networks."""
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        try:
            ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise ConfigError(
                key, f"{part!r} is not an IP address or network (e.g. 10.0.0.1, 10.0.0.0/8)"
            ) from None


class ClientLimit:
    """At most a number of hits per client key in a moving window, e.g. "10/minute"."""

    def __init__(self, key: str, value: str) -> None:
        try:
            self.rate = parse_limit(value)
        except ValueError:
            raise ConfigError(
                key, f'must look like "10/minute" or "50 per hour", got {value!r}'
            ) from None
        self.name = key
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    def wait(self, host: str) -> int | None:
        """Count a hit from ``host``; None when allowed, else seconds until it would be."""
        client = client_key(host)
        if self.limiter.hit(self.rate, self.name, client):
            return None
        stats = self.limiter.get_window_stats(self.rate, self.name, client)
        return max(1, math.ceil(stats.reset_time - time.time()))
