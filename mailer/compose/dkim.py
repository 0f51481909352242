"""DKIM signatures (RFC 6376) on outgoing messages, made by OpenSSL.

Every message gets one ``DKIM-Signature`` header: ``a=rsa-sha256`` with an RSA
key of 1024 to 4096 bits (2048 recommended), or ``a=ed25519-sha256`` (RFC 8463)
when the key is Ed25519; ``c=relaxed/relaxed``. The algorithm follows the key.

Which headers are signed
    ``DEFAULT_SIGNED_HEADERS`` (From, To, Subject, Date, Message-ID, List-Id,
    List-Unsubscribe, List-Unsubscribe-Post, Reply-To, MIME-Version, Content-Type,
    Content-Language). From, List-Unsubscribe and List-Unsubscribe-Post are
    required: RFC 6376 section 5.4 for From, RFC 8058 section 4 (and the Gmail and
    Yahoo bulk-sender rules) for the two unsubscribe headers. Each name goes into
    ``h=`` once more than the message has it ("over-signing", RFC 6376 section
    8.15), so nobody can add a second Subject or List-Unsubscribe, nor a Reply-To
    we did not set, without breaking the signature.

Who does what
    dkimpy (module ``dkim``) does part of the DKIM work: the end of the relaxed
    body canonicalization and folding the header (``fold``), and splitting the
    header fields (``rfc822_parse``) where the composer's plain CRLF header
    block is not what it is given. The signed header fields are picked
    and relaxed here, in one pass (``DkimSigner._signed_fields``): dkimpy's
    ``select_headers`` looked at every field once per name in ``h=``, and its
    canonicalization ran two regular expressions per field; property tests
    hold the bytes fed to the hash to what dkimpy's ``hash_headers`` feeds,
    and the fields split here to what ``rfc822_parse`` splits.
    ``cryptography`` (OpenSSL) makes the signature over that hash.

What is made once
    Most of a blast's messages share most of their signature header: only
    ``t=`` and ``bh=`` change, and ``h=`` with the fields a message has. The
    header's tags are folded and relaxed once for each ``h=`` and filled in
    per message (``DkimSigner._unsigned``), and the relaxed form of a header
    field already seen (From, List-Id, MIME-Version, Date within its second)
    is kept. Both memos hold at most 256 entries each and are emptied when
    full; what they hold depends only on their keys, so they are safe to share
    between threads.

Why not just ``dkim.sign``
    dkimpy 1.1.8 makes RSA signatures in pure Python (``dkim/crypto.py``:
    ``rsa_decrypt`` is two ``pow()`` calls on Python integers, no blinding) and
    parses the PEM key again with its own ASN.1 code on every call. It has no hook
    to hand the RSA operation elsewhere: ``DomainSigner.gen_header`` calls the
    module-level ``RSASSA_PKCS1_v1_5_sign`` directly. The remaining options were
    patching that function process-wide or subclassing and copying
    ``gen_header``. Both are worse than what this module does: it uses the
    module-level helpers that ``DKIM.sign`` itself is built from (named above;
    public names, though dkimpy documents only ``sign`` and ``verify``) and
    signs the resulting SHA-256 digest with ``cryptography``: PKCS#1 v1.5 over
    the pre-hashed digest, or Ed25519 over the digest as RFC 8463 says. PKCS#1
    v1.5 signatures are deterministic, so ``tests/test_dkim.py`` checks that the
    tags, ``b=`` included, are the ones ``dkim.DKIM.sign`` makes for the same
    message and time; if a dkimpy release changes those helpers, that test
    fails.

Cost per signature of the bench's 10 KB alert (RSA-2048, loops of 3,000 on
the 2-core development machine): about 326 µs, of which OpenSSL's signature
is 266 (355 before the memos and the header split of this module; 375-400
on a slower machine before that); with dkimpy's header selection and
canonicalization it was 578 µs, and with dkimpy's relaxed body 850-980 µs
for a 14 KB alert (its regular expressions rewrite every single space;
:func:`relaxed_body` replaces only the runs that change). ``dkim.sign`` with
the same key and headers: 7,700 / 8,150 us.

The signed message must reach the relay unchanged apart from what relaxed
canonicalization forgives (header refolding, whitespace runs): the transport
must not re-encode bodies or rewrite headers after signing.

Ed25519 on its own is not enough: several large receivers still ignore
``ed25519-sha256``. Sign with RSA, and add an Ed25519 signature beside it
with :meth:`DkimSigner.with_second` (``[dkim] second_private_key_file``).

A ``DkimSigner`` holds no per-message state (its memos hold only what their
keys determine), so one instance may sign from several threads at once.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import logging
import re
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Final, TypeVar

import dkim  # type: ignore[import-untyped]
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils
from dkim.canonicalization import (  # type: ignore[import-untyped]
    CanonicalizationPolicy,
    correct_empty_body,
    strip_trailing_lines,
)

from mailer.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_SIGNED_HEADERS: Final = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Reply-To",
    "MIME-Version",
    "Content-Type",
    "Content-Language",
)
# RFC 6376 5.4 (From) and RFC 8058 section 4 (the one-click unsubscribe headers).
REQUIRED_SIGNED_HEADERS: Final = ("From", "List-Unsubscribe", "List-Unsubscribe-Post")

KEY_SETTING: Final = "dkim.private_key_file"
DOMAIN_SETTING: Final = "dkim.domain"
SELECTOR_SETTING: Final = "dkim.selector"
HEADERS_SETTING: Final = "dkim.headers"

# RFC 8301 section 3.2: signers MUST use at least 1024 bits and SHOULD use 2048;
# verifiers are only required to handle keys of up to 4096 bits.
MIN_RSA_BITS: Final = 1024
RECOMMENDED_RSA_BITS: Final = 2048
MAX_RSA_BITS: Final = 4096

_HEADER_NAME: Final = b"DKIM-Signature"
_RELAXED: Final = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
_HEADER_WSP = re.compile(rb"[\t ]+")
_TRAILING_WSP: Final = re.compile(rb"[\t ]+\r\n")  # spaces and tabs ending a line
_WSP_RUN: Final = re.compile(rb"\t[\t ]*| [\t ]+")  # runs that are not one space
_SPACE_RUN: Final = re.compile(rb"  +")  # the same in a body without tabs, ten times faster
_PKCS1_SHA256: Final = (padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN: Final = re.compile(rf"{_LABEL}(?:\.{_LABEL})+")
_SELECTOR: Final = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_FIELD_NAME: Final = re.compile(r"[!-9;-~]+")  # RFC 5322 ftext: printable ASCII but ':'
_NAME_BYTES: Final = bytes(range(0x21, 0x7F))  # what rfc822_parse takes in a field's name
_FOLD_START: Final = (b" ", b"\t")  # a line starting so continues the field before it
# Slots for t= and bh= in the header made once (DkimSigner._unsigned): bytes that no tag
# holds (names, domain and selector are checked printable ASCII), no space among them,
# as long as what fills them (a base64 SHA-256 is 44 characters).
_STAMP: Final = b"\x01"
_BODY_HASH: Final = b"\x02" * 44
_MADE_MOST: Final = 256  # entries each of a signer's two memos keeps at most

SigningKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


class DkimSigner:
    """Signs messages for one domain with one key (``<selector>._domainkey.<domain>``)."""

    def __init__(
        self,
        *,
        domain: str,
        selector: str,
        private_key_pem: bytes,
        headers: tuple[str, ...] = DEFAULT_SIGNED_HEADERS,
    ) -> None:
        self.domain = _checked_name(domain.rstrip(".").lower(), _DOMAIN, DOMAIN_SETTING)
        self.selector = _checked_name(selector, _SELECTOR, SELECTOR_SETTING)
        self._key = _load_private_key(private_key_pem)
        self.algorithm = (
            "ed25519-sha256" if isinstance(self._key, ed25519.Ed25519PrivateKey) else "rsa-sha256"
        )
        self.headers = _checked_headers(headers)
        self._also: tuple[DkimSigner, ...] = ()  # signers after this one (with_second)
        self._names = tuple(name.lower().encode("ascii") for name in self.headers)
        self._wanted = frozenset(self._names)
        # What _unsigned and _signed_fields made before, for the next message.
        self._unsigned_made: dict[tuple[tuple[bytes, ...], int], tuple[bytes, bytes]] = {}
        self._relaxed_made: dict[tuple[bytes, bytes], bytes] = {}
        d = self.domain.encode("ascii")
        # The tags before t=, in the order dkim.DKIM.sign writes them.
        self._leading_tags = b"; ".join(
            [
                b"v=1",
                b"a=" + self.algorithm.encode("ascii"),
                b"c=" + _RELAXED.to_c_value(),
                b"d=" + d,
                b"i=@" + d,
                b"q=dns/txt",
                b"s=" + self.selector.encode("ascii"),
            ]
        )

    @classmethod
    def from_file(
        cls, *, domain: str, selector: str, key_file: Path, setting: str = KEY_SETTING
    ) -> DkimSigner:
        """A signer whose private key is the PEM file ``key_file``.

        Raises :class:`~mailer.errors.ConfigError` naming ``setting`` (by default
        ``dkim.private_key_file``) when the file cannot be read or holds no usable
        private key.
        """
        try:
            pem = key_file.read_bytes()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ConfigError(setting, f"cannot read {key_file}: {reason}") from exc
        try:
            return cls(domain=domain, selector=selector, private_key_pem=pem)
        except ConfigError as exc:
            if exc.key != KEY_SETTING:
                raise
            raise ConfigError(setting, f"{key_file}: {exc.problem}") from exc

    def with_second(self, second: DkimSigner) -> DkimSigner:
        """A signer that puts ``second``'s signature after this one's on every message.

        Each signature covers the message as it was before either was added (neither
        signs the other's ``DKIM-Signature`` field), so either verifies alone: RFC 8463
        suggests an Ed25519 signature beside an RSA one for receivers that check only
        one of the two.
        """
        both = copy.copy(self)
        both._also = (*self._also, second)
        return both

    @property
    def dns_name(self) -> str:
        """Where the public key must be published, as a TXT record."""
        return f"{self.selector}._domainkey.{self.domain}"

    def dns_record(self) -> str:
        """The TXT record to publish at :attr:`dns_name` (RFC 6376 3.6.1, RFC 8463)."""
        public = self._key.public_key()
        if isinstance(public, ed25519.Ed25519PublicKey):
            kind = "ed25519"
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        else:
            kind = "rsa"
            raw = public.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        return f"v=DKIM1; k={kind}; p={base64.b64encode(raw).decode('ascii')}"

    def signature_header(self, message: bytes, *, crlf: bool = False) -> bytes:
        """The complete ``DKIM-Signature`` header field for ``message``, ending in CRLF.

        ``message`` is the whole message (headers, blank line, body) with CRLF line
        endings; the header goes in front of it unchanged.
        """
        headers, body = _parse(message, crlf=crlf)
        present = Counter(name.lower() for name, _ in headers)
        if not present[b"from"]:
            raise ValueError("the message has no From header field, which DKIM must sign")
        signed = tuple(name for name in self._names for _ in range(present[name] + 1))
        stamp = b"%d" % int(time.time())
        body_hash = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest())
        folded, relaxed = self._unsigned(signed, len(stamp))
        # b= starts a line of its own, so the text before it is the same, byte for
        # byte, in the header that is hashed (b= empty) and the one that is sent.
        unsigned = _filled(folded, stamp, body_hash)
        hasher = hashlib.sha256(self._signed_fields(headers, signed))
        hasher.update(_filled(relaxed, stamp, body_hash))
        signature = self._sign(hasher.digest())
        # fold() continues after the last fold, so only the b= value is split.
        value: bytes = dkim.fold(unsigned + base64.b64encode(signature), namelen=len(_HEADER_NAME))
        return _HEADER_NAME + b": " + value + b"\r\n"

    def _unsigned(self, signed: tuple[bytes, ...], stamp_size: int) -> tuple[bytes, bytes]:
        """The header's tags up to an empty ``b=``, folded, and the same relaxed as it is
        hashed (``dkim-signature:`` and the value), with :data:`_STAMP` and
        :data:`_BODY_HASH` where ``t=`` and ``bh=`` go (see :func:`_filled`).

        Made once for each list of signed names: folding breaks at spaces only, and
        the two slots hold no space and are as long as what fills them, so the
        folds fall where they would with the values in place.
        """
        key = (signed, stamp_size)
        found = self._unsigned_made.get(key)
        if found is None:
            tags = b"; ".join(
                [
                    self._leading_tags,
                    b"t=" + _STAMP * stamp_size,
                    b"h=" + b" : ".join(signed),
                    b"bh=" + _BODY_HASH,
                ]
            )
            folded = _fold_tags(tags + b";") + b"\r\n b="
            found = _kept(
                self._unsigned_made,
                key,
                (folded, b"dkim-signature:" + _relaxed_value(b" " + folded)),
            )
        return found

    def _signed_fields(self, headers: list[list[bytes]], signed: Sequence[bytes]) -> bytes:
        """The header fields named in ``h=``, relaxed (RFC 6376 3.4.2), in the order
        they are hashed: for a name listed again, the next instance up from the
        bottom; nothing for an instance the message does not have (RFC 6376 5.4.2).

        What dkimpy's ``select_headers`` and relaxed ``canonicalize_headers`` give
        (``tests/test_dkim.py`` holds the two equal), in one pass over the fields.
        A field seen before (From, Date within the second, MIME-Version…) is not
        relaxed again: the relaxed lines of the last fields seen are kept.
        """
        found: dict[bytes, list[bytes]] = {}
        made = self._relaxed_made
        for name, value in headers:
            lowered = name.lower()
            if lowered in self._wanted:
                lowered = lowered.rstrip()  # as canonicalized (a parsed name has no spaces)
                key = (lowered, value)
                line = made.get(key)
                if line is None:
                    line = _kept(made, key, lowered + b":" + _relaxed_value(value) + b"\r\n")
                found.setdefault(lowered, []).append(line)
        return b"".join(found[name].pop() for name in signed if found.get(name))

    def sign(self, message: bytes, *, crlf: bool = False) -> bytes:
        """``message`` with its ``DKIM-Signature`` header in front (and a second's,
        see :meth:`with_second`)."""
        if not self._also:
            return self.signature_header(message, crlf=crlf) + message
        signers = (self, *self._also)
        return b"".join(s.signature_header(message, crlf=crlf) for s in signers) + message

    def _sign(self, digest: bytes) -> bytes:
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            return self._key.sign(digest)  # RFC 8463 3: Ed25519 over the SHA-256 hash
        return self._key.sign(digest, *_PKCS1_SHA256)


def relaxed_body(body: bytes) -> bytes:
    """The body in "relaxed" canonical form (RFC 6376 3.4.4), byte for byte as dkimpy's.

    Relaxed canonicalization drops spaces and tabs at line ends and turns every
    other run of them into one space. dkimpy does the second step by replacing
    every run, single spaces included, which in a text of thousands of words
    is about half the cost of a signature. Here only the runs that change are
    replaced: two or more characters, or a tab; and a body with no tab and no
    space before a line end (an alert's indented HTML) needs only its runs of
    spaces collapsed, which one simple pattern does in a tenth of the time of
    the two general ones (about 15 instead of 300 µs for a 9 KB body). The
    empty lines at the end are handled by dkimpy's own functions, and property
    tests hold the whole to dkimpy's bytes.
    """
    if b"\t" in body or b" \r\n" in body:
        body = _WSP_RUN.sub(b" ", _TRAILING_WSP.sub(b"\r\n", body))
    elif b"  " in body:  # the usual case (indented HTML): runs of spaces only, none at an end
        body = _SPACE_RUN.sub(b" ", body)
    return bytes(correct_empty_body(strip_trailing_lines(body)))


def _relaxed_value(value: bytes) -> bytes:
    """A header field's value in relaxed form (RFC 6376 3.4.2), as dkimpy makes it:
    unfolded, each run of spaces and tabs one space, no whitespace at either end."""
    if b"\n" in value:
        value = value.replace(b"\r\n", b"").replace(b"\n", b"")
    if b"\t" in value or b"  " in value:
        value = _HEADER_WSP.sub(b" ", value)
    return value.strip()


def _parse(message: bytes, *, crlf: bool = False) -> tuple[list[list[bytes]], bytes]:
    """Header fields (name, raw value) and body, as ``dkim.rfc822_parse`` gives them.

    ``rfc822_parse`` splits the whole message into lines to find the end of the
    header; with CRLF line endings throughout (what ``mailer.compose.message``
    writes), the body it returns is exactly the bytes after the first empty line,
    and the header block is split here (:func:`_fields`), or handed to it where
    only it can say what the fields are (``crlf``: the caller promises CRLF
    throughout, as the composer does; else it is counted). Anything else goes
    through it whole.
    """
    end = message.find(b"\r\n\r\n")
    crlf_only = crlf or message.count(b"\n") == message.count(b"\r\n")
    if end > 0 and crlf_only and not message.startswith(b"\r\n"):
        fields = _fields(message[:end])
        if fields is None:
            fields, _ = dkim.rfc822_parse(message[: end + 2])
        return fields, message[end + 4 :]
    parsed: tuple[list[list[bytes]], bytes] = dkim.rfc822_parse(message)
    return parsed


def _fields(block: bytes) -> list[list[bytes]] | None:
    """The fields of a header block (its lines joined by CRLF, no empty line) as
    ``dkim.rfc822_parse`` gives them: [name, value with its CRLF], continuation
    lines appended to the value. None for a block it would read otherwise (a
    line without a colon after a name of printable ASCII, such as an mbox
    ``From `` line, or a continuation line first): then only it says what the
    fields are, or raises. ``tests/test_dkim.py`` holds the two equal.
    """
    fields: list[list[bytes]] = []
    for line in block.split(b"\r\n"):
        if line[:1] in _FOLD_START:
            if not fields:
                return None
            fields[-1][1] += line + b"\r\n"
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name or name.translate(None, _NAME_BYTES):
            return None
        fields.append([name, value + b"\r\n"])
    return fields


K = TypeVar("K")
V = TypeVar("V")


def _kept(memo: dict[K, V], key: K, value: V) -> V:
    """``value``, kept in ``memo`` under ``key``; a full memo is emptied first."""
    if len(memo) >= _MADE_MOST:
        memo.clear()
    memo[key] = value
    return value


def _filled(text: bytes, stamp: bytes, body_hash: bytes) -> bytes:
    """``text`` of :meth:`DkimSigner._unsigned` with ``t=`` and ``bh=`` in their slots."""
    return text.replace(_STAMP * len(stamp), stamp).replace(_BODY_HASH, body_hash)


def _fold_tags(tags: bytes) -> bytes:
    """``dkim.fold`` of a tag list, unless it would have to split a tag value.

    ``fold`` breaks inside a word longer than a line (a very long domain, say),
    which would put whitespace into that tag's value. A line longer than 78
    characters is legal (RFC 5322 2.1.1), a broken ``d=`` is not.
    """
    folded: bytes = dkim.fold(tags, namelen=len(_HEADER_NAME))
    return folded if folded.replace(b"\r\n ", b" ") == tags else tags


def _checked_name(value: str, pattern: re.Pattern[str], setting: str) -> str:
    if not pattern.fullmatch(value):
        raise ConfigError(
            setting,
            f"{value!r} is not a DNS name of letters, digits and hyphens "
            "(write an internationalized domain in its xn-- form)",
        )
    return value


def _checked_headers(headers: tuple[str, ...]) -> tuple[str, ...]:
    unique: dict[str, str] = {}
    for name in headers:
        if not _FIELD_NAME.fullmatch(name):
            raise ConfigError(HEADERS_SETTING, f"{name!r} is not a header field name")
        unique.setdefault(name.lower(), name)
    missing = [name for name in REQUIRED_SIGNED_HEADERS if name.lower() not in unique]
    if missing:
        raise ConfigError(HEADERS_SETTING, f"must include {', '.join(missing)}")
    forbidden = sorted(
        name for key, name in unique.items() if key.encode("ascii") in dkim.DKIM.SHOULD_NOT
    )
    if forbidden:
        raise ConfigError(
            HEADERS_SETTING,
            f"{', '.join(forbidden)} must not be signed: relays add or change them (RFC 6376 5.4)",
        )
    return tuple(unique.values())


def _load_private_key(pem: bytes) -> SigningKey:
    """The signing key in ``pem``; every problem is a ConfigError for the key file."""

    def problem(text: str) -> ConfigError:
        return ConfigError(KEY_SETTING, text)

    if b"-----BEGIN " not in pem:
        raise problem("not a PEM file (no '-----BEGIN' line)")
    if b"PRIVATE KEY-----" not in pem:
        if b"PUBLIC KEY-----" in pem or b"CERTIFICATE-----" in pem:
            raise problem(
                "a public key or certificate, not a private key; signing needs the "
                "private key (the public key is what goes into DNS)"
            )
        raise problem("no PEM private key in it")
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError as exc:  # cryptography's way of saying "needs a password"
        raise problem(
            "encrypted with a passphrase; store the key unencrypted, readable only by the mailer"
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise problem(f"not loadable as a private key ({exc})") from exc
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    if not isinstance(key, rsa.RSAPrivateKey):
        kind = type(key).__name__.removeprefix("_").replace("PrivateKey", "")
        raise problem(f"a key of type {kind}; DKIM signs with RSA (2048 bits) or Ed25519")
    if not MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS:
        raise problem(
            f"a {key.key_size}-bit RSA key; DKIM needs {MIN_RSA_BITS} to "
            f"{MAX_RSA_BITS} bits (RFC 8301), use {RECOMMENDED_RSA_BITS}"
        )
    if key.key_size < RECOMMENDED_RSA_BITS:
        log.warning(
            "DKIM key of %d bits: RFC 8301 recommends %d", key.key_size, RECOMMENDED_RSA_BITS
        )
    return key
