"""The shared web helpers, above all the one form reader, against hostile input.

The reader's rules (mailer/web/common.py): a body over its cap is 413; a form
that is not UTF-8 (raw bytes or %-escapes) is 400; a field given twice is 400
naming it, unless the handler declared it repeatable; nothing answers 500.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from mailer.devsmtp import free_port
from mailer.petitions.store import create_petition
from mailer.store import Database, Suppression, open_database
from mailer.store.models import Signature
from mailer.web import app_for
from mailer.web.common import (
    MAX_BODY_BYTES,
    MAX_FIELDS,
    BodyError,
    page_language,
    page_templates,
    parse_form,
    read_form,
    request_language,
    truncate_ip,
)
from mailer.web.server import BackgroundServer
from tests.admin_helpers import add_users, sign_in
from tests.conftest import make_settings
from tests.factories import add_people, people

# Text that UTF-8 can carry (no lone surrogates).
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
FIELDS = st.dictionaries(TEXT, TEXT, max_size=8)


# -- the parser ------------------------------------------------------------------------


@given(FIELDS)
def test_a_form_reads_back_what_was_sent(fields: dict[str, str]) -> None:
    form = parse_form(urlencode(fields).encode("utf-8"))
    assert dict(form) == fields
    assert all(form.all(name) == [value] for name, value in fields.items())


@given(st.binary(max_size=300))
def test_any_bytes_are_a_form_or_a_400_naming_the_problem(body: bytes) -> None:
    refusal: BodyError | None = None
    try:
        parse_form(body)
    except BodyError as exc:
        refusal = exc
    if refusal is not None:
        assert refusal.status == 400 and refusal.message.startswith("the form ")


def test_a_repeated_field_is_refused_by_name() -> None:
    with pytest.raises(BodyError) as refused:
        parse_form(b"csrf=a&email=x%40example.org&email=y%40example.org")
    assert refused.value.status == 400
    assert refused.value.message == "the form gives the field 'email' more than once"


def test_a_repeatable_field_keeps_every_value_in_order() -> None:
    form = parse_form(b"lists=b&name=n&lists=a&lists=", repeatable=("lists",))
    assert form.all("lists") == ["b", "a", ""]
    assert form["name"] == "n" and form.all("missing") == []


@pytest.mark.parametrize("body", [b"name=\xff\xfe", b"name=%FF", b"na%C3me=x", b"\xc3\x28=1"])
def test_a_form_that_is_not_utf8_is_refused(body: bytes) -> None:
    with pytest.raises(BodyError) as refused:
        parse_form(body)
    assert (refused.value.status, refused.value.message) == (400, "the form is not UTF-8")


def test_a_form_with_too_many_fields_is_refused() -> None:
    assert len(parse_form("&".join(f"f{i}=1" for i in range(MAX_FIELDS)).encode())) == MAX_FIELDS
    with pytest.raises(BodyError) as refused:
        parse_form("&".join(f"f{i}=1" for i in range(MAX_FIELDS + 1)).encode())
    assert refused.value.status == 400 and str(MAX_FIELDS) in refused.value.message


# -- the reader over a real socket -----------------------------------------------------


async def _echo(request: Request) -> Response:
    limit = int(request.query_params.get("limit", MAX_BODY_BYTES))
    try:
        form = await read_form(request, limit=limit, repeatable=("many",))
    except BodyError as exc:
        return PlainTextResponse(exc.message, status_code=exc.status)
    return JSONResponse({name: form.all(name) for name in form})


@pytest.fixture(scope="module")
def echo() -> Iterator[httpx.Client]:
    app = Starlette(routes=[Route("/", _echo, methods=["POST"])])
    with BackgroundServer(app, port=free_port()) as server, httpx.Client(base_url=server.url) as c:
        yield c


def test_the_reader_answers_the_form_it_read(echo: httpx.Client) -> None:
    sent = echo.post("/", content=b"a=1&many=x&many=y&b=%C3%A9")
    assert sent.status_code == 200
    assert sent.json() == {"a": ["1"], "many": ["x", "y"], "b": ["é"]}


def test_a_body_over_the_cap_is_413_declared_or_streamed(echo: httpx.Client) -> None:
    at_cap = echo.post("/?limit=16", content=b"a=" + b"x" * 14)
    assert at_cap.status_code == 200 and at_cap.json() == {"a": ["x" * 14]}
    declared = echo.post("/?limit=16", content=b"a=" + b"x" * 15)
    assert declared.status_code == 413 and "at most 16 bytes" in declared.text

    def chunks() -> Iterator[bytes]:  # no Content-Length: the reader counts as it reads
        yield b"a="
        for _ in range(100):
            yield b"x" * 1000

    streamed = echo.post("/?limit=16", content=chunks())
    assert streamed.status_code == 413 and "at most 16 bytes" in streamed.text
    default = echo.post("/", content=b"a=" + b"x" * MAX_BODY_BYTES)
    assert default.status_code == 413


# -- the app's forms -------------------------------------------------------------------


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Database, str]]:
    """The whole app (public, petition and admin pages, API) over a real socket, on SQLite."""
    path: Path = tmp_path_factory.mktemp("web") / "mailer.db"
    db = open_database(f"sqlite:///{path}", create=True)
    settings = make_settings()
    add_users(db)
    add_people(db, "members", people(2))
    add_people(db, "donors", people(1, domain="donors.example"))
    create_petition(db, settings, name="executive-orders", goal=10)
    with BackgroundServer(app_for(db, settings), port=free_port()) as server:
        yield db, server.url
    db.dispose()


@pytest.fixture(scope="module")
def admin(app: tuple[Database, str]) -> Iterator[tuple[httpx.Client, str]]:
    """An admin's signed-in browser session and its CSRF token."""
    with httpx.Client(base_url=app[1]) as client:
        yield client, sign_in(client, "admin")


def test_a_petition_form_with_a_repeated_field_is_400_and_stores_nothing(
    app: tuple[Database, str],
) -> None:
    db, url = app
    with httpx.Client(base_url=url) as client:
        page = client.get("/p/executive-orders")
        assert page.status_code == 200
        form = [("first_name", "Ana"), ("email", "a@example.org"), ("email", "b@example.org")]
        refused = client.post("/p/executive-orders", content=urlencode(form).encode())
        not_utf8 = client.post("/p/executive-orders", content=b"first_name=\xff")
    assert refused.status_code == 400 and "'email' more than once" in refused.text
    assert not_utf8.status_code == 400 and "not UTF-8" in not_utf8.text
    with db.session() as session:
        assert session.exec(select(Signature)).first() is None


def test_admin_forms_refuse_bad_bodies_by_name_and_store_nothing(
    app: tuple[Database, str], admin: tuple[httpx.Client, str]
) -> None:
    db, _ = app
    client, csrf = admin
    twice = urlencode([("csrf", csrf), ("email", "a@example.org"), ("email", "b@example.org")])
    refused = client.post("/admin/suppressions", content=twice.encode())
    assert refused.status_code == 400 and "'email' more than once" in refused.text
    not_utf8 = client.post("/admin/suppressions", content=f"csrf={csrf}&email=a%FF".encode())
    assert not_utf8.status_code == 400 and "not UTF-8" in not_utf8.text
    too_large = client.post("/admin/suppressions", content=b"x" * (MAX_BODY_BYTES + 1))
    assert too_large.status_code == 413
    with db.session() as session:
        assert session.exec(select(Suppression)).first() is None


def test_the_new_blast_form_takes_several_lists(admin: tuple[httpx.Client, str]) -> None:
    client, csrf = admin
    form = {"csrf": csrf, "name": "two lists", "template": "executive-orders"}
    created = client.post(
        "/admin/blasts",
        content=urlencode([*form.items(), ("lists", "members"), ("lists", "donors")]),
    )
    assert created.status_code == 303, created.text
    page = client.get(created.headers["location"])
    assert "members" in page.text and "donors" in page.text


def test_api_bodies_over_the_cap_or_not_utf8_get_json_errors(
    admin: tuple[httpx.Client, str],
) -> None:
    client, csrf = admin
    headers = {"X-CSRF-Token": csrf, "Content-Type": "application/json"}
    too_large = client.post("/api/suppressions", headers=headers, content=b" " * 70_000)
    assert too_large.status_code == 413 and "at most" in too_large.json()["error"]
    not_utf8 = client.post("/api/suppressions", headers=headers, content=b'{"email": "\xff"}')
    assert not_utf8.status_code == 400 and not_utf8.json()["error"]


HOSTILE = st.one_of(
    st.binary(max_size=400),
    st.lists(st.tuples(TEXT, TEXT), max_size=6).map(lambda pairs: urlencode(pairs).encode()),
    st.builds(
        lambda a, b: a + b"&" + a + b,
        st.sampled_from([b"email=x", b"csrf=y", b"%"]),
        st.binary(max_size=20),
    ),
)
POSTS = (
    "/p/executive-orders",
    "/p/no-such-petition",
    "/a/not-a-token",
    "/u/not-a-token",
    "/admin/login",
    "/admin/suppressions",
    "/admin/blasts",
    "/admin/users",
    "/api/suppressions",
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=HOSTILE, content_type=st.sampled_from(["", "application/x-www-form-urlencoded"]))
def test_no_hostile_body_gets_a_500(
    admin: tuple[httpx.Client, str], body: bytes, content_type: str
) -> None:
    client, csrf = admin
    headers = {"X-CSRF-Token": csrf, "Content-Type": content_type} if content_type else {}
    for path in POSTS:
        answer = client.post(path, content=body, headers=headers)
        assert answer.status_code < 500, (path, body, answer.text)


# -- the other shared helpers ----------------------------------------------------------


def test_one_page_environment_escapes_everything() -> None:
    env = page_templates()
    assert env is page_templates() and env.autoescape is True
    assert env.from_string("{{ x }}").render(x="<b>") == "&lt;b&gt;"


def test_languages_fall_back_to_english() -> None:
    assert [page_language(c) for c in ("es", "en", "fr", "")] == ["es", "en", "en", "en"]
    scope = {
        "type": "http",
        "query_string": b"",
        "headers": [(b"accept-language", b"fr, es;q=0.8")],
    }
    assert request_language(Request(scope)) == "es"
    assert request_language(Request({**scope, "query_string": b"lang=en"})) == "en"
    assert request_language(Request({**scope, "headers": []})) == "en"


def test_ip_truncation_never_keeps_the_host() -> None:
    assert truncate_ip("203.0.113.77") == "203.0.113.0"
    assert truncate_ip("2001:db8:1234:5678::1") == "2001:db8:1234::"
    assert truncate_ip("not an address") == ""
