"""Odd input is answered 4xx, never 5xx: Unicode digits, huge numbers, long names, deep JSON.

The last test posts random values (hypothesis) to every public form and every
API endpoint of a running app and asserts that no answer is a server error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from mailer import accounts
from mailer.devsmtp import free_port
from mailer.store import Database
from mailer.web import app_for
from mailer.web.admin.api import ENDPOINTS
from mailer.web.server import BackgroundServer
from tests.admin_helpers import add_users, sign_in
from tests.conftest import make_settings
from tests.factories import Person
from tests.petitionkit import CSRF, csrf_of, cta_path, send_petition_blast
from tests.smtpserver import SmtpTestServer

# Numbers nobody should get a 500 for: Unicode digits (str.isdigit() says yes to them),
# past the 64-bit range of the databases, signed, spaced, empty.
ODD_NUMBERS = ["²", "١٢٣٤٥", "1" * 23, "9" * 19, "-1", "0x10", " 7", "", "0"]


@dataclass
class Site:
    url: str
    admin: dict[str, str]  # an admin's API token header
    viewer: dict[str, str]
    blast_id: int
    slug: str
    action_path: str  # the recipient's /a/<token>
    unsubscribe_path: str


@pytest.fixture
def site(sqlite_db: Database, smtp_server: SmtpTestServer) -> Iterator[Site]:
    settings = make_settings(smtp_port=smtp_server.port, petitions={"rate_limit": "100000/minute"})
    sent = send_petition_blast(sqlite_db, settings, smtp_server, [Person("p0@example.org")])
    add_users(sqlite_db)
    admin = accounts.new_api_token(sqlite_db, "admin", actor="t")
    viewer = accounts.new_api_token(sqlite_db, "viewer", actor="t")
    message = smtp_server.handler.to("p0@example.org")[0].message()
    unsubscribe = str(message["List-Unsubscribe"]).split("<", 1)[1].split(">", 1)[0]
    with BackgroundServer(app_for(sqlite_db, settings), port=free_port()) as server:
        with httpx.Client(base_url=server.url) as client:
            action = client.get(cta_path(smtp_server, "p0@example.org")).headers["location"]
        yield Site(
            url=server.url,
            admin={"Authorization": f"Bearer {admin}"},
            viewer={"Authorization": f"Bearer {viewer}"},
            blast_id=sent.blast_id,
            slug=sent.petition.slug,
            action_path=httpx.URL(action).path,
            unsubscribe_path=httpx.URL(unsubscribe).path,
        )


def test_unicode_digits_in_a_zip_are_refused(site: Site) -> None:
    with httpx.Client(base_url=site.url) as client:
        form = client.get(f"/p/{site.slug}")
        answer = client.post(
            f"/p/{site.slug}",
            data={
                "csrf": csrf_of(form),
                "first_name": "Ana",
                "email": "ana@example.org",
                "zip": "١٢٣٤٥",
            },
        )
    assert answer.status_code == 400


@pytest.mark.parametrize("odd", ODD_NUMBERS)
def test_odd_numbers_in_ids_and_log_filters_are_not_server_errors(site: Site, odd: str) -> None:
    value = quote(odd, safe="")
    with httpx.Client(base_url=site.url, headers=site.admin) as api:
        for path in (
            f"/api/blasts/{value}",
            f"/api/supporters/{value}",
            f"/api/blasts/{site.blast_id}/log?reply_code={value}",
            f"/api/blasts/{site.blast_id}/log?after={value}",
            f"/api/blasts/{site.blast_id}/log?limit={value}",
        ):
            assert api.get(path).status_code < 500, path
        done = api.post(f"/api/supporters/{value}/unsubscribe", json={})
        assert done.status_code < 500
    with httpx.Client(base_url=site.url) as browser:
        sign_in(browser, "admin")
        for path in (
            f"/admin/supporters/{value}",
            f"/admin/blasts/{site.blast_id}/log?reply_code={value}",
            f"/admin/blasts/{site.blast_id}/log?after={value}",
            f"/admin/blasts/{site.blast_id}/log.csv?reply_code={value}&after={value}",
        ):
            assert browser.get(path).status_code < 500, path


def test_a_too_long_time_zone_is_refused(site: Site) -> None:
    with httpx.Client(base_url=site.url, headers=site.admin) as api:
        answer = api.post(
            f"/api/blasts/{site.blast_id}/schedule",
            json={"date": "2030-01-01", "time": "09:00", "zone": "A" * 300},
        )
    assert answer.status_code == 400 and "time zone" in answer.json()["error"]


def test_deeply_nested_json_is_refused_and_not_read_before_the_role_check(site: Site) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    with httpx.Client(base_url=site.url) as api:
        refused = api.post("/api/blasts", content=body[:60_000], headers=site.viewer)
        assert refused.status_code == 403  # a viewer may not create blasts: body never read
        nested = api.post("/api/blasts", content=b"[" * 30_000, headers=site.admin)
        assert nested.status_code == 400 and "nested" in nested.json()["error"]


# -- random values to every public form and API endpoint -----------------------------------

odd_text = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=st.characters(categories=["Nd", "No"]), max_size=30),
    st.sampled_from(ODD_NUMBERS),
    st.integers().map(str),
    st.text(min_size=250, max_size=400),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), odd_text),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(odd_text, inner, max_size=3)
    ),
    max_leaves=8,
)
PUBLIC_FIELDS = ("first_name", "last_name", "email", "zip", "message", "opt_in", "lang", "confirm")


@hypothesis_settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_random_values_to_every_public_form_never_get_a_server_error(
    site: Site, data: st.DataObject
) -> None:
    path = data.draw(
        st.sampled_from(
            [f"/p/{site.slug}", site.action_path, site.unsubscribe_path, "/admin/login"]
        )
    )
    fields = data.draw(st.dictionaries(st.sampled_from(PUBLIC_FIELDS), odd_text, max_size=6))
    if path == "/admin/login":
        fields = {"name": fields.get("first_name", ""), "password": fields.get("zip", "")}
    with httpx.Client(base_url=site.url) as client:
        found = CSRF.search(client.get(path).text)
        if found is not None and data.draw(st.booleans()):  # the form's token reaches the checks
            fields["csrf"] = found.group(1)
        answer = client.post(path, data=fields)
    assert answer.status_code < 500, (path, fields, answer.text[:300])


@hypothesis_settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_random_values_to_every_api_endpoint_never_get_a_server_error(
    site: Site, data: st.DataObject
) -> None:
    endpoint = data.draw(st.sampled_from(ENDPOINTS))
    path = endpoint.path
    for name in ("ref", "id"):
        if "{" + name + "}" in path:
            value = data.draw(st.one_of(odd_text, st.just(str(site.blast_id))))
            path = path.replace("{" + name + "}", quote(value, safe="") or "x")
    query = {name: data.draw(odd_text) for name, _, _ in endpoint.query if data.draw(st.booleans())}
    body: object = {}
    if endpoint.body is not None:
        properties = endpoint.body.get("properties", {})
        body = data.draw(
            st.one_of(
                st.fixed_dictionaries({}, optional={k: json_values for k in properties}),
                json_values,
            )
        )
    with httpx.Client(base_url=site.url, headers=site.admin) as api:
        answer = api.request(
            endpoint.method,
            path,
            params=query,
            content=json.dumps(body) if endpoint.method == "POST" else None,
        )
    assert answer.status_code < 500, (endpoint.method, path, query, body, answer.text[:300])
