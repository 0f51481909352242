"""DKIM signing: real alerts, signed, sent through a real SMTP server, verified by dkimpy.

The verifier is dkimpy's own ``dkim.verify`` (pure-Python RSA, independent of the
OpenSSL signature it checks), given the public key through ``dnsfunc`` instead of
DNS. Keys are made here with ``cryptography``; nothing is read from the network.
"""

from __future__ import annotations

import base64
import functools
import re
import secrets
import smtplib
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

import dkim  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from dkim.canonicalization import CanonicalizationPolicy  # type: ignore[import-untyped]
from dkim.util import parse_tag_value  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from mailer.assemble import dkim_signer
from mailer.blasts import create_blast, send_now
from mailer.compose import dkim as signing
from mailer.compose.alert import AlertComposer, Recipient
from mailer.compose.dkim import DEFAULT_SIGNED_HEADERS, DkimSigner, relaxed_body
from mailer.compose.message import Identity, build_message, list_id_header, to_bytes
from mailer.compose.templates import AlertTemplate, RenderedAlert
from mailer.compose.tokens import TokenSigner
from mailer.errors import ConfigError
from mailer.store import Database
from tests.conftest import REPO, TEST_SECRET, make_settings
from tests.factories import Person, add_people, people
from tests.smtpserver import SmtpTestServer

DOMAIN = "example.org"
SELECTOR = "alerts2026"
BASE = "https://act.example.org"
IDENTITY = Identity(
    from_name="Rapid Response",
    from_address="alerts@example.org",
    reply_to="",
    return_path="bounces@example.org",
    list_id=list_id_header("supporters", "Rights Network", DOMAIN),
    unsubscribe_mailto="unsubscribe@example.org",
)

DnsFunc = Callable[..., bytes | None]
PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


# --- keys and the "DNS" that publishes them -----------------------------------------------


def pem(
    key: PrivateKey, fmt: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8
) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def txt_record(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    """The record an operator would publish, built from the key, not by the signer."""
    public = key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return b"v=DKIM1; k=ed25519; p=" + base64.b64encode(raw)
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


def dns(records: dict[str, bytes]) -> DnsFunc:
    """A ``dnsfunc`` for dkimpy: TXT records by name, nothing else."""

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name.decode("ascii").rstrip(".").lower())

    return lookup


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def signer(rsa_key: rsa.RSAPrivateKey) -> DkimSigner:
    return DkimSigner(domain=DOMAIN, selector=SELECTOR, private_key_pem=pem(rsa_key))


@pytest.fixture(scope="module")
def published(rsa_key: rsa.RSAPrivateKey) -> DnsFunc:
    return dns({f"{SELECTOR}._domainkey.{DOMAIN}": txt_record(rsa_key)})


# --- messages built by the project's own code ----------------------------------------------


class MemoryLinks:
    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def link_id(self, url: str) -> int | None:
        return self.ids.get(url)

    def register(self, urls: Iterable[str]) -> None:
        for url in urls:
            self.ids.setdefault(url, len(self.ids) + 1)


def composed_alert(delivery_id: int, recipient: Recipient) -> bytes:
    """One recipient's finished alert, from the real template, as the sender builds it."""
    composer = AlertComposer(
        template=AlertTemplate(REPO / "templates", "executive-orders"),
        blast_id=3,
        blast_name="eo",
        cta_url="https://www.whitehouse.gov/contact/",
        identity=IDENTITY,
        organization_name="Rights Network",
        postal_address="1 Example Way\nOakland, CA 94600",
        base_url=BASE,
        signer=TokenSigner(TEST_SECRET),
        link_ids=MemoryLinks(),
        clock=lambda: datetime(2026, 11, 28, 9, 0, tzinfo=UTC),
    )
    composer.register_links()
    return composer.compose(delivery_id, recipient).message.data


def simple_message(*, subject: str, to_name: str, text: str = "Act now.\n") -> bytes:
    alert = RenderedAlert(
        language="en", subject=subject, preheader="", html=f"<p>{text}</p>", text=text
    )
    msg = build_message(
        alert,
        identity=IDENTITY,
        to_name=to_name,
        to_address="someone@example.net",
        message_id="<3.9.abcdef@example.org>",
        unsubscribe_url=f"{BASE}/u/TOKEN123",
        unsubscribe_token="TOKEN123",
        date=datetime(2026, 11, 28, 9, 0, tzinfo=UTC),
    )
    return to_bytes(msg)


@pytest.fixture(scope="module")
def alert() -> bytes:
    return composed_alert(1, Recipient(email="ana@example.net", first_name="Ana", language="en"))


def tags_of(signed: bytes, index: int = 0) -> dict[bytes, bytes]:
    """The tags of the index-th DKIM-Signature, whitespace removed from the values."""
    header_block = signed.split(b"\r\n\r\n", 1)[0]
    fields = re.split(rb"\r\n(?![ \t])", header_block)
    values = [f.split(b":", 1)[1] for f in fields if f.lower().startswith(b"dkim-signature:")]
    tags: dict[bytes, bytes] = parse_tag_value(values[index].replace(b"\r\n", b""))
    return {name: b"".join(value.split()) for name, value in tags.items()}


def signed_names(signed: bytes) -> list[bytes]:
    return tags_of(signed)[b"h"].split(b":")


def dkimpy_signed(key: rsa.RSAPrivateKey, message: bytes, names: list[bytes]) -> bytes:
    """``message`` signed by dkimpy's own signer (pure-Python RSA), relaxed/relaxed,
    over ``names``, at whatever ``time.time`` says."""
    header: bytes = dkim.DKIM(message).sign(
        SELECTOR.encode(),
        DOMAIN.encode(),
        pem(key, serialization.PrivateFormat.TraditionalOpenSSL),
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=names,
    )
    return header + message


def replace_header(message: bytes, name: bytes, value: bytes) -> bytes:
    """``message`` with the (unfolded) field ``name`` given a new value."""
    pattern = re.compile(rb"^" + re.escape(name) + rb":.*?\r\n(?![ \t])", re.M | re.S | re.I)
    changed, count = pattern.subn(name + b": " + value + b"\r\n", message, count=1)
    assert count == 1
    return changed


# --- the real path: sign, send, receive, verify --------------------------------------------


def test_signed_alert_sent_through_smtp_verifies(
    smtp_server: SmtpTestServer, signer: DkimSigner, published: DnsFunc, alert: bytes
) -> None:
    signed = signer.sign(alert)
    with smtplib.SMTP("127.0.0.1", smtp_server.port, timeout=10) as client:
        refused = client.sendmail(IDENTITY.envelope_sender(), ["ana@example.net"], signed)
    assert refused == {}
    received = smtp_server.handler.received[0].data
    assert received.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;")
    assert dkim.verify(received, dnsfunc=published) is True


def test_signature_covers_from_and_the_unsubscribe_headers(
    signer: DkimSigner, alert: bytes
) -> None:
    signed = signer.sign(alert)
    tags = tags_of(signed)
    names = signed_names(signed)
    assert tags[b"d"] == DOMAIN.encode() and tags[b"s"] == SELECTOR.encode()
    assert tags[b"a"] == b"rsa-sha256" and tags[b"c"] == b"relaxed/relaxed"
    for name in (b"from", b"list-unsubscribe", b"list-unsubscribe-post", b"subject", b"to"):
        # Present once in the message, named twice: a second one cannot be added.
        assert names.count(name) == 2, name
    assert names.count(b"reply-to") == 1  # absent, named once: cannot be added
    assert abs(int(tags[b"t"]) - time.time()) < 60


def test_header_is_folded_ascii_and_goes_in_front(signer: DkimSigner, alert: bytes) -> None:
    header = signer.signature_header(alert)
    assert header.isascii() and header.endswith(b"\r\n") and not header.endswith(b"\r\n\r\n")
    lines = header[:-2].split(b"\r\n")
    assert lines[0].startswith(b"DKIM-Signature: ")
    assert all(line.startswith(b" ") for line in lines[1:])
    assert all(len(line) <= 78 for line in lines)
    signed = signer.sign(alert)
    assert signed.endswith(alert) and signed[: -len(alert)].startswith(b"DKIM-Signature: ")


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(
            lambda m: replace_header(m, b"Subject", b"Ana, everything is fine"), id="subject"
        ),
        pytest.param(lambda m: m.replace(b"Dear Ana,", b"Dear Bob,", 1), id="body"),
        pytest.param(
            lambda m: replace_header(m, b"List-Unsubscribe", b"<https://evil.example/u/TOKEN>"),
            id="list-unsubscribe",
        ),
        pytest.param(
            lambda m: replace_header(m, b"List-Unsubscribe-Post", b"List-Unsubscribe=Nope"),
            id="list-unsubscribe-post",
        ),
        pytest.param(
            lambda m: replace_header(m, b"From", b"Rapid Response <alerts@evil.example>"),
            id="from",
        ),
        pytest.param(lambda m: b"Subject: Urgent: send money\r\n" + m, id="second-subject-on-top"),
        pytest.param(lambda m: b"Reply-To: thief@evil.example\r\n" + m, id="added-reply-to"),
        pytest.param(
            lambda m: m.replace(b"\r\n\r\n", b"\r\n\r\nP.S. click here\r\n", 1),
            id="text-before-body",
        ),
    ],
)
def test_any_change_after_signing_fails(
    signer: DkimSigner, published: DnsFunc, alert: bytes, tamper: Callable[[bytes], bytes]
) -> None:
    signed = signer.sign(alert)
    changed = tamper(signed)
    assert changed != signed
    assert dkim.verify(changed, dnsfunc=published) is False


def test_relaxed_canonicalization_survives_refolding(
    signer: DkimSigner, published: DnsFunc, alert: bytes
) -> None:
    """A relay that refolds headers or respaces them does not break the signature."""
    signed = signer.sign(alert)
    refolded = re.sub(rb"\r\n[ \t]+", b" ", signed.split(b"\r\n\r\n", 1)[0])
    respaced = refolded.replace(b"Subject: ", b"Subject:   ") + b"\r\n\r\n"
    moved = respaced + signed.split(b"\r\n\r\n", 1)[1]
    assert moved != signed
    assert dkim.verify(moved, dnsfunc=published) is True


def test_a_signature_with_another_key_fails(
    other_rsa_key: rsa.RSAPrivateKey, published: DnsFunc, alert: bytes
) -> None:
    impostor = DkimSigner(domain=DOMAIN, selector=SELECTOR, private_key_pem=pem(other_rsa_key))
    assert dkim.verify(impostor.sign(alert), dnsfunc=published) is False


def test_no_published_key_fails(signer: DkimSigner, alert: bytes) -> None:
    assert dkim.verify(signer.sign(alert), dnsfunc=dns({})) is False


def test_dns_record_is_the_public_key(signer: DkimSigner, rsa_key: rsa.RSAPrivateKey) -> None:
    assert signer.dns_name == f"{SELECTOR}._domainkey.{DOMAIN}"
    assert signer.dns_record().encode() == txt_record(rsa_key)


@pytest.mark.parametrize("line_end", [b"\r\n", b"\n"], ids=["crlf", "lf"])
def test_same_signature_as_dkimpys_own_signer(
    monkeypatch: pytest.MonkeyPatch,
    rsa_key: rsa.RSAPrivateKey,
    signer: DkimSigner,
    published: DnsFunc,
    alert: bytes,
    line_end: bytes,
) -> None:
    """PKCS#1 v1.5 is deterministic: for the same message, headers and time, the
    OpenSSL signature made here equals dkimpy's pure-Python one, so both hashed
    exactly the same canonical bytes."""
    message = alert.replace(b"\r\n", line_end)
    monkeypatch.setattr(time, "time", lambda: 1_795_855_261.7)
    ours = signer.sign(message)
    assert tags_of(ours) == tags_of(dkimpy_signed(rsa_key, message, signed_names(ours)))
    assert dkim.verify(ours, dnsfunc=published) is True


def test_long_domain_keeps_its_tag_values_whole(rsa_key: rsa.RSAPrivateKey) -> None:
    domain = "mail." + "a" * 60 + "." + "b" * 40 + ".example.org"
    long_signer = DkimSigner(domain=domain, selector=SELECTOR, private_key_pem=pem(rsa_key))
    signed = long_signer.sign(simple_message(subject="Hello", to_name="Ana"))
    assert tags_of(signed)[b"d"] == domain.encode()
    lookup = dns({f"{SELECTOR}._domainkey.{domain}": txt_record(rsa_key)})
    assert dkim.verify(signed, dnsfunc=lookup) is True


def test_a_message_without_from_is_refused(signer: DkimSigner) -> None:
    with pytest.raises(ValueError, match="From"):
        signer.sign(b"To: a@example.net\r\nSubject: hi\r\n\r\nbody\r\n")


@functools.cache
def property_signer() -> tuple[DkimSigner, DnsFunc]:
    """One key for all examples (@given cannot use function-scoped fixtures)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (
        DkimSigner(domain=DOMAIN, selector="prop", private_key_pem=pem(key)),
        dns({f"prop._domainkey.{DOMAIN}": txt_record(key)}),
    )


@settings(max_examples=60, deadline=None)
@given(
    subject=st.text(max_size=120),
    first=st.text(max_size=40),
    last=st.text(max_size=40),
    text=st.text(max_size=300),
)
def test_any_subject_name_and_text_verifies(subject: str, first: str, last: str, text: str) -> None:
    signer, lookup = property_signer()
    message = simple_message(subject=subject, to_name=f"{first} {last}", text=text or "x")
    assert dkim.verify(signer.sign(message), dnsfunc=lookup) is True


# --- Ed25519 (RFC 8463); dkimpy verifies it with PyNaCl --------------------------------------


def test_ed25519_signature_verifies_and_rsa_can_sign_alongside(
    signer: DkimSigner, rsa_key: rsa.RSAPrivateKey, alert: bytes
) -> None:
    # dkimpy verifies ed25519-sha256 with PyNaCl, a dev dependency for this test.
    ed_key = ed25519.Ed25519PrivateKey.generate()
    ed_signer = DkimSigner(domain=DOMAIN, selector="ed", private_key_pem=pem(ed_key))
    assert ed_signer.dns_record().encode() == txt_record(ed_key)
    lookup = dns(
        {
            f"ed._domainkey.{DOMAIN}": txt_record(ed_key),
            f"{SELECTOR}._domainkey.{DOMAIN}": txt_record(rsa_key),
        }
    )
    both = ed_signer.sign(signer.sign(alert))
    assert tags_of(both, 0)[b"a"] == b"ed25519-sha256"
    assert tags_of(both, 1)[b"a"] == b"rsa-sha256"
    assert dkim.DKIM(both).verify(idx=0, dnsfunc=lookup) is True
    assert dkim.DKIM(both).verify(idx=1, dnsfunc=lookup) is True
    tampered = replace_header(both, b"Subject", b"changed")
    assert dkim.DKIM(tampered).verify(idx=0, dnsfunc=lookup) is False


# --- configuration errors name the setting ------------------------------------------------


def small_rsa_pem(bits: int) -> bytes:
    """An RSA key too short to generate with cryptography (it refuses under 1024 bits)."""
    e = 65537

    def prime(size: int) -> int:
        while True:
            # The top two bits set make the product exactly 2 * size bits long.
            candidate = secrets.randbits(size) | (3 << (size - 2)) | 1
            if candidate % e != 1 and is_probable_prime(candidate):
                return candidate

    p, q = prime(bits // 2), prime(bits // 2)
    d = pow(e, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p=p,
        q=q,
        d=d,
        dmp1=d % (p - 1),
        dmq1=d % (q - 1),
        iqmp=pow(q, -1, p),
        public_numbers=rsa.RSAPublicNumbers(e, p * q),
    )
    return pem(numbers.private_key(unsafe_skip_rsa_key_validation=True))


def is_probable_prime(n: int) -> bool:
    if n % 2 == 0:
        return n == 2
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for _ in range(32):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_file_cases(rsa_key: rsa.RSAPrivateKey) -> dict[str, tuple[bytes | None, str]]:
    encrypted = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    return {
        "missing": (None, "cannot read"),
        "not-pem": (b"selector alerts2026, see the wiki\n", "not a PEM file"),
        "public-key": (public_pem(rsa_key), "public key"),
        "rsa-512": (small_rsa_pem(512), "512-bit RSA key"),
        "ec-key": (pem(ec.generate_private_key(ec.SECP256R1())), "RSA (2048 bits) or Ed25519"),
        "encrypted": (encrypted, "passphrase"),
        "garbage-pem": (
            b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
            "not loadable as a private key",
        ),
    }


@pytest.mark.parametrize(
    "case", ["missing", "not-pem", "public-key", "rsa-512", "ec-key", "encrypted", "garbage-pem"]
)
def test_unusable_key_file_is_a_config_error(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, case: str
) -> None:
    content, problem = key_file_cases(rsa_key)[case]
    key_file = tmp_path / "dkim.pem"
    if content is not None:
        key_file.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        DkimSigner.from_file(domain=DOMAIN, selector=SELECTOR, key_file=key_file)
    assert info.value.key == "dkim.private_key_file"
    assert problem in info.value.problem
    assert str(key_file) in info.value.problem


def test_key_file_in_either_pem_format_loads(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    formats = {
        "pkcs8": serialization.PrivateFormat.PKCS8,
        "pkcs1": serialization.PrivateFormat.TraditionalOpenSSL,
    }
    for label, fmt in formats.items():
        key_file = tmp_path / f"{label}.pem"
        key_file.write_bytes(pem(rsa_key, fmt))
        loaded = DkimSigner.from_file(domain=DOMAIN, selector=SELECTOR, key_file=key_file)
        assert loaded.algorithm == "rsa-sha256"
        assert loaded.dns_record().encode() == txt_record(rsa_key)


def test_a_1024_bit_key_is_still_accepted() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    assert DkimSigner(domain=DOMAIN, selector="old", private_key_pem=pem(key)).algorithm


REQUIRED_MISSING = ("To", "Subject", "List-Unsubscribe", "List-Unsubscribe-Post")


@pytest.mark.parametrize(
    ("domain", "selector", "headers", "setting"),
    [
        ("exa mple.org", SELECTOR, DEFAULT_SIGNED_HEADERS, "dkim.domain"),
        ("localhost", SELECTOR, DEFAULT_SIGNED_HEADERS, "dkim.domain"),
        (DOMAIN, "a;b", DEFAULT_SIGNED_HEADERS, "dkim.selector"),
        (DOMAIN, SELECTOR, REQUIRED_MISSING, "dkim.headers"),
        (DOMAIN, SELECTOR, ("From", "Subject"), "dkim.headers"),
        (DOMAIN, SELECTOR, (*DEFAULT_SIGNED_HEADERS, "Received"), "dkim.headers"),
        (DOMAIN, SELECTOR, (*DEFAULT_SIGNED_HEADERS, "Bad:Name"), "dkim.headers"),
    ],
)
def test_bad_settings_name_their_key(
    rsa_key: rsa.RSAPrivateKey, domain: str, selector: str, headers: tuple[str, ...], setting: str
) -> None:
    with pytest.raises(ConfigError) as info:
        DkimSigner(domain=domain, selector=selector, private_key_pem=pem(rsa_key), headers=headers)
    assert info.value.key == setting


def test_a_blast_sent_by_the_engine_is_signed_and_verifies_as_received(
    sqlite_db: Database,
    smtp_server: SmtpTestServer,
    rsa_key: rsa.RSAPrivateKey,
    tmp_path: Path,
    published: DnsFunc,
) -> None:
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(pem(rsa_key))
    settings = make_settings(
        smtp_port=smtp_server.port,
        dkim={"private_key_file": str(key_file), "domain": DOMAIN, "selector": SELECTOR},
    )
    add_people(sqlite_db, "members", [*people(3), Person("zoe@example.org", "Zoë", "es")])
    blast = create_blast(
        sqlite_db, settings, name="signed", template="executive-orders", list_names=["members"]
    )
    assert blast.id is not None
    assert send_now(sqlite_db, settings, blast.id).counts["sent"] == 4
    assert len(smtp_server.handler.received) == 4
    for item in smtp_server.handler.received:
        assert item.data.startswith(b"DKIM-Signature:")
        assert dkim.verify(item.data, dnsfunc=published)


def test_a_second_key_adds_a_second_signature_and_each_verifies_alone(
    sqlite_db: Database,
    smtp_server: SmtpTestServer,
    rsa_key: rsa.RSAPrivateKey,
    tmp_path: Path,
) -> None:
    ed_key = ed25519.Ed25519PrivateKey.generate()
    (tmp_path / "rsa.pem").write_bytes(pem(rsa_key))
    (tmp_path / "ed.pem").write_bytes(pem(ed_key))
    settings = make_settings(
        smtp_port=smtp_server.port,
        dkim={
            "private_key_file": str(tmp_path / "rsa.pem"),
            "selector": SELECTOR,
            "second_private_key_file": str(tmp_path / "ed.pem"),
            "second_selector": "ed2026",
        },
    )
    add_people(sqlite_db, "members", people(2))
    blast = create_blast(
        sqlite_db, settings, name="dual", template="executive-orders", list_names=["members"]
    )
    assert blast.id is not None
    assert send_now(sqlite_db, settings, blast.id).counts["sent"] == 2
    rsa_only = dns({f"{SELECTOR}._domainkey.{DOMAIN}": txt_record(rsa_key)})
    ed_only = dns({f"ed2026._domainkey.{DOMAIN}": txt_record(ed_key)})
    for item in smtp_server.handler.received:
        assert (tags_of(item.data, 0)[b"a"], tags_of(item.data, 1)[b"a"]) == (
            b"rsa-sha256",
            b"ed25519-sha256",
        )
        # A receiver that knows only one of the two keys (or algorithms) still verifies.
        assert dkim.DKIM(item.data).verify(idx=0, dnsfunc=rsa_only) is True
        assert dkim.DKIM(item.data).verify(idx=1, dnsfunc=ed_only) is True
        tampered = replace_header(item.data, b"Subject", b"changed")
        assert dkim.DKIM(tampered).verify(idx=1, dnsfunc=ed_only) is False


@pytest.mark.parametrize(
    ("second", "problem_key"),
    [
        ({"second_private_key_file": "ed.pem"}, "dkim.second_selector"),
        (
            {"second_private_key_file": "ed.pem", "second_selector": SELECTOR},
            "dkim.second_selector",
        ),
        (
            {"second_private_key_file": "nowhere.pem", "second_selector": "ed"},
            "dkim.second_private_key_file",
        ),
    ],
)
def test_a_second_key_needs_its_own_selector_and_a_readable_file(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, second: dict[str, str], problem_key: str
) -> None:
    (tmp_path / "rsa.pem").write_bytes(pem(rsa_key))
    (tmp_path / "ed.pem").write_bytes(pem(ed25519.Ed25519PrivateKey.generate()))
    values = {k: str(tmp_path / v) if k.endswith("file") else v for k, v in second.items()}
    settings = make_settings(
        dkim={"private_key_file": str(tmp_path / "rsa.pem"), "selector": SELECTOR, **values}
    )
    with pytest.raises(ConfigError) as info:
        dkim_signer(settings, address="alerts@example.org")
    assert info.value.key == problem_key


BODY_BYTES = st.lists(
    st.sampled_from([b" ", b"  ", b"\t", b"\r\n", b"\r", b"\n", b"a", b".", b"=20", b"\xc3\xa9"]),
    max_size=40,
).map(b"".join)


@settings(max_examples=500)
@given(BODY_BYTES)
def test_relaxed_body_is_dkimpys_canonical_form(body: bytes) -> None:
    """Replacing only the whitespace runs that change gives dkimpy's bytes exactly."""
    policy = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
    assert relaxed_body(body) == policy.canonicalize_body(body)


@settings(max_examples=300)
@given(BODY_BYTES.map(lambda body: body.replace(b"\t", b"  ")))
def test_relaxed_body_without_tabs_is_dkimpys_canonical_form(body: bytes) -> None:
    """The same for bodies with runs of spaces but no tab (the fast path)."""
    policy = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
    assert relaxed_body(body) == policy.canonicalize_body(body)


ED25519_PEM = ed25519.Ed25519PrivateKey.generate().private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
)


class _Recording:
    """A hasher that keeps what it is fed."""

    def __init__(self) -> None:
        self.fed = b""

    def update(self, data: bytes) -> None:
        self.fed += data


HEADER_VALUES = st.lists(
    st.sampled_from(
        [b" ", b"  ", b"\t", b"\r\n ", b"\r\n\t", b"\n ", b"\r", b"a", b"=", b"\xc3\xa9"]
    ),
    max_size=20,
).map(lambda parts: b"".join(parts) + b"\r\n")
HEADER_NAMES = st.sampled_from([b"From", b"To", b"Subject", b"subject", b"SUBJECT ", b"X-Other"])


@settings(max_examples=500)
@given(
    fields=st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=8),
    signed=st.lists(st.sampled_from([b"from", b"to", b"subject"]), max_size=6),
)
def test_the_signed_header_fields_are_hashed_as_dkimpy_hashes_them(
    fields: list[tuple[bytes, bytes]], signed: list[bytes]
) -> None:
    """Which instance of each listed name, in which order, relaxed (RFC 6376 3.4.2, 5.4.2):
    the signer's own pass over the fields gives dkimpy's bytes exactly."""
    names = ("From", "To", "Subject", "List-Unsubscribe", "List-Unsubscribe-Post")
    signer = DkimSigner(
        domain=DOMAIN, selector=SELECTOR, private_key_pem=ED25519_PEM, headers=names
    )
    wanted = {name.lower().encode() for name in names}
    headers = [[name, value] for name, value in fields]
    relaxed = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
    expected = _Recording()
    chosen = relaxed.canonicalize_headers([f for f in headers if f[0].lower() in wanted])
    unsigned = b"v=1; a=ed25519-sha256;\r\n  h=from : to;\r\n b="
    dkim.hash_headers(expected, relaxed, chosen, signed, (b"DKIM-Signature", b" " + unsigned), {})
    ours = signer._signed_fields(headers, signed)
    ours += b"dkim-signature:" + signing._relaxed_value(b" " + unsigned)
    assert ours == expected.fed


# --- what the signer makes once and reuses --------------------------------------------------

HEADER_LINES = st.lists(
    st.sampled_from(
        [
            b"From: a@example.org",
            b"To: B <b@example.net>",
            b"Subject: x",
            b"subject:",
            b" continued",
            b"\tcontinued",
            b"X-Odd::: colons",
            b"From mbox line",
            b"no colon",
            b":empty name",
            b"Bad Name: space",
            b"Caf\xc3\xa9: non-ascii",
            b"Lone\rcr: value",
            b"To:\xc3\xa9",
        ]
    ),
    min_size=1,
    max_size=10,
)


@settings(max_examples=500)
@given(HEADER_LINES, st.binary(max_size=20))
def test_the_header_is_split_as_dkimpy_splits_it(lines: list[bytes], body: bytes) -> None:
    """The signer's own split of the header block gives rfc822_parse's fields, or
    hands the block to it (which may refuse it: then both refuse it alike)."""
    message = b"\r\n".join(lines) + b"\r\n\r\n" + body.replace(b"\n", b"\r\n")
    try:
        expected = dkim.rfc822_parse(message)
    except Exception as exc:  # whatever dkimpy raises, ours must raise too
        with pytest.raises(type(exc)):
            signing._parse(message, crlf=True)
        return
    assert signing._parse(message, crlf=True) == expected


@settings(max_examples=300)
@given(
    stamp=st.integers(min_value=0, max_value=10**12),
    body_hash=st.binary(min_size=32, max_size=32).map(base64.b64encode),
    signed=st.lists(st.sampled_from([b"from", b"to", b"subject", b"list-unsubscribe"])),
    long_domain=st.booleans(),
)
def test_the_tags_made_once_fold_as_the_tags_folded_each_time(
    stamp: int, body_hash: bytes, signed: list[bytes], long_domain: bool
) -> None:
    """``t=`` and ``bh=`` filled into the header made once give the bytes folding the
    whole tag list for each message gives, sent and hashed (the slots hold no space
    and are as long as their values, and folding breaks only at spaces)."""
    domain = ("mail." + "a" * 60 + ".example.org") if long_domain else DOMAIN
    signer = DkimSigner(domain=domain, selector=SELECTOR, private_key_pem=ED25519_PEM)
    t = b"%d" % stamp
    tags = b"; ".join(
        [
            signer._leading_tags,
            b"t=" + t,
            b"h=" + b" : ".join([b"from", *signed]),
            b"bh=" + body_hash,
        ]
    )
    expected = signing._fold_tags(tags + b";") + b"\r\n b="
    folded, relaxed = signer._unsigned((b"from", *signed), len(t))
    assert signing._filled(folded, t, body_hash) == expected
    hashed = b"dkim-signature:" + signing._relaxed_value(b" " + expected)
    assert signing._filled(relaxed, t, body_hash) == hashed


@pytest.mark.parametrize("now", [7.5, 1_000_000_000.0, 99_999_999_999.0])
def test_same_signature_as_dkimpys_at_times_of_any_length(
    monkeypatch: pytest.MonkeyPatch,
    rsa_key: rsa.RSAPrivateKey,
    signer: DkimSigner,
    published: DnsFunc,
    alert: bytes,
    now: float,
) -> None:
    """``t=`` of another length than today's fills its own header, not today's."""
    signer.sign(alert)  # a header made for today's t= (ten digits) first, then `now`'s
    monkeypatch.setattr(time, "time", lambda: now)
    ours = signer.sign(alert, crlf=True)
    assert tags_of(ours) == tags_of(dkimpy_signed(rsa_key, alert, signed_names(ours)))
    assert tags_of(ours)[b"t"] == b"%d" % int(now)
