"""Issue 15, item 4: rate limits that hold and cannot be turned against signers."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailer import accounts
from mailer.clients import ClientLimit, client_key
from mailer.config import PetitionsSettings, Settings
from mailer.devsmtp import free_port
from mailer.errors import ConfigError
from mailer.store import Database
from mailer.store.models import UserRole, utcnow
from mailer.web import create_app
from mailer.web.admin import admin_routes
from mailer.web.server import BackgroundServer
from tests.admin_helpers import PASSWORD, hidden
from tests.conftest import TEST_SECRET, make_settings
from tests.petitionkit import SentPetition
from tests.test_action_pages import public_form, signatures
from tests.test_action_pages import sent as sent

LIMITED = PetitionsSettings(rate_limit="2/minute")


def serve(db: Database, *, trusted_proxies: str = "") -> BackgroundServer:
    app = create_app(db, TEST_SECRET, petitions=LIMITED)
    return BackgroundServer(app, port=free_port(), trusted_proxies=trusted_proxies)


def test_posts_without_a_valid_csrf_token_do_not_use_up_a_real_signers_limit(
    db: Database, sent: SentPetition
) -> None:
    with serve(db) as server, httpx.Client(base_url=server.url) as client:
        for _ in range(10):
            path, junk = public_form(client, sent.petition.slug, csrf="forged")
            assert client.post(path, data=junk).status_code == 403
        path, form = public_form(client, sent.petition.slug)
        assert client.post(path, data=form).status_code == 200
    assert [s.email for s in signatures(db)] == ["carla.diaz@example.org"]


def test_a_rotating_x_forwarded_for_does_not_get_around_the_limit(
    db: Database, sent: SentPetition
) -> None:
    with serve(db) as server, httpx.Client(base_url=server.url) as client:
        codes = []
        for n in range(3):
            path, form = public_form(client, sent.petition.slug, email=f"n{n}@example.org")
            forwarded = {"X-Forwarded-For": f"203.0.113.{n + 1}"}
            codes.append(client.post(path, data=form, headers=forwarded).status_code)
    assert codes == [200, 200, 429]


def test_a_trusted_proxys_forwarded_address_is_the_client(db: Database, sent: SentPetition) -> None:
    with (
        serve(db, trusted_proxies="127.0.0.1") as server,
        httpx.Client(base_url=server.url) as client,
    ):
        codes = []
        for n in range(3):
            path, form = public_form(client, sent.petition.slug, email=f"n{n}@example.org")
            forwarded = {"X-Forwarded-For": f"203.0.113.{n + 1}"}
            codes.append(client.post(path, data=form, headers=forwarded).status_code)
    assert codes == [200, 200, 200]


@given(st.integers(0, 2**128 - 1), st.integers(0, 2**64 - 1))
def test_ipv6_clients_are_keyed_on_their_64(address: int, other_host: int) -> None:
    one = ipaddress.IPv6Address(address)
    same_net = ipaddress.IPv6Address((address >> 64 << 64) | other_host)
    other_net = ipaddress.IPv6Address(address ^ (1 << 64))
    if one.ipv4_mapped is None and same_net.ipv4_mapped is None:
        assert client_key(str(one)) == client_key(str(same_net))
    if one.ipv4_mapped is None and other_net.ipv4_mapped is None:
        assert client_key(str(one)) != client_key(str(other_net))


@given(st.ip_addresses(v=4))
def test_ipv4_clients_are_keyed_on_their_address(address: ipaddress.IPv4Address) -> None:
    assert client_key(str(address)) == str(address)
    assert client_key(f"::ffff:{address}") == str(address)


def test_odd_client_values_still_get_a_key() -> None:
    assert client_key("") == client_key("not an address") != ""


def test_a_limit_refuses_past_its_rate_and_says_how_long_to_wait() -> None:
    limit = ClientLimit("web.login_rate_limit", "2/minute")
    assert limit.wait("2001:db8::1") is None and limit.wait("2001:db8::2") is None
    wait = limit.wait("2001:db8::ffff")
    assert wait is not None and 0 < wait <= 60
    assert limit.wait("2001:db8:0:1::1") is None  # another /64


def test_a_bad_limit_names_its_setting() -> None:
    with pytest.raises(ConfigError, match=r"web\.login_rate_limit"):
        ClientLimit("web.login_rate_limit", "often")
    with pytest.raises(ConfigError, match=r"web\.login_rate_limit"):
        make_settings(web={"login_rate_limit": "often"})


@pytest.fixture
def admin_site(db: Database) -> Iterator[str]:
    settings: Settings = make_settings(web={"login_rate_limit": "3/minute"})
    accounts.add_user(db, "ana", UserRole.ADMIN, PASSWORD, actor="t", now=utcnow())
    app = create_app(db, TEST_SECRET, extra_routes=admin_routes(db, settings))
    with BackgroundServer(app, port=free_port()) as server:
        yield server.url


def test_sign_in_is_rate_limited_per_client(admin_site: str) -> None:
    with httpx.Client(base_url=admin_site) as client:
        codes = []
        for n in range(4):
            form = client.get("/admin/login")
            data = {"csrf": hidden(form.text), "name": f"guess{n}", "password": "wrong"}
            codes.append(client.post("/admin/login", data=data).status_code)
        assert codes == [401, 401, 401, 429]
        form = client.get("/admin/login")
        data = {"csrf": hidden(form.text), "name": "ana", "password": PASSWORD}
        refused = client.post("/admin/login", data=data)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
