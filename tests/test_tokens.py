"""Tracking and unsubscribe tokens cannot be forged, altered or reused for another purpose."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailer.compose.tokens import TokenSigner
from mailer.errors import TokenError

SECRET = "s3cret-" + "x" * 40
signer = TokenSigner(SECRET)
ids = st.integers(min_value=0, max_value=2**63 - 1)
link_ids = st.integers(min_value=0, max_value=2**32 - 1)


@given(ids, link_ids)
def test_click_token_round_trip(delivery_id: int, link_id: int) -> None:
    token = signer.click(delivery_id, link_id)
    assert token.isascii() and "=" not in token and "/" not in token and "+" not in token
    got = signer.read_click(token)
    assert (got.delivery_id, got.link_id) == (delivery_id, link_id)


@given(ids)
def test_unsubscribe_token_round_trip(delivery_id: int) -> None:
    assert signer.read_unsubscribe(signer.unsubscribe(delivery_id)).delivery_id == delivery_id


@given(ids, link_ids, st.data())
def test_any_changed_character_is_rejected(
    delivery_id: int, link_id: int, data: st.DataObject
) -> None:
    token = signer.click(delivery_id, link_id)
    pos = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    replacement = data.draw(st.sampled_from(alphabet).filter(lambda c: c != token[pos]))
    altered = token[:pos] + replacement + token[pos + 1 :]
    with pytest.raises(TokenError):
        signer.read_click(altered)


@given(ids, link_ids, st.integers(min_value=0, max_value=29 * 8 - 1))
def test_any_flipped_bit_is_rejected(delivery_id: int, link_id: int, bit: int) -> None:
    raw = bytearray(base64.urlsafe_b64decode(signer.click(delivery_id, link_id) + "=="))
    raw[bit // 8 % len(raw)] ^= 1 << (bit % 8)
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(TokenError):
        signer.read_click(forged)


@given(ids, link_ids)
def test_another_key_does_not_verify(delivery_id: int, link_id: int) -> None:
    other = TokenSigner("another-secret-" + "y" * 40)
    with pytest.raises(TokenError):
        other.read_click(signer.click(delivery_id, link_id))


@given(ids)
def test_tokens_of_one_purpose_do_not_work_for_another(delivery_id: int) -> None:
    with pytest.raises(TokenError):
        signer.read_click(signer.unsubscribe(delivery_id))
    with pytest.raises(TokenError):
        signer.read_unsubscribe(signer.click(delivery_id, 1))


@given(st.text(max_size=80))
def test_arbitrary_text_never_verifies_and_never_crashes(text: str) -> None:
    with pytest.raises(TokenError):
        signer.read_click(text)


def test_token_does_not_contain_the_address() -> None:
    token = signer.click(12345, 7)
    assert "@" not in token
    assert len(token) == 40
    assert len(signer.unsubscribe(12345)) == 35


def test_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="empty secret"):
        TokenSigner("")


@given(ids)
def test_bounce_token_round_trip_and_fits_a_local_part(delivery_id: int) -> None:
    token = signer.bounce(delivery_id)
    assert signer.read_bounce(token) == delivery_id
    assert len("bounces+" + token) <= 64  # RFC 5321 4.5.3.1.1: local part at most 64 octets
    with pytest.raises(TokenError):
        signer.read_unsubscribe(token)


petition_ids = st.integers(min_value=0, max_value=2**32 - 1)


@given(ids, petition_ids)
def test_action_token_round_trip(delivery_id: int, petition_id: int) -> None:
    token = signer.action(delivery_id, petition_id)
    assert token.isascii() and len(token) == 40
    got = signer.read_action(token)
    assert (got.delivery_id, got.petition_id) == (delivery_id, petition_id)


@given(ids, petition_ids, st.integers(min_value=0, max_value=29 * 8 - 1))
def test_an_action_token_cannot_be_moved_to_another_delivery_or_petition(
    delivery_id: int, petition_id: int, bit: int
) -> None:
    # Any change of the signed bytes (the delivery, hence the blast; the petition;
    # the purpose; the version) or of the tag is refused.
    raw = bytearray(base64.urlsafe_b64decode(signer.action(delivery_id, petition_id) + "=="))
    raw[bit // 8 % len(raw)] ^= 1 << (bit % 8)
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(TokenError):
        signer.read_action(forged)


@given(ids, petition_ids)
def test_action_tokens_and_other_purposes_never_cross(delivery_id: int, petition_id: int) -> None:
    action = signer.action(delivery_id, petition_id)
    # Same layout as a click token (delivery + 4-byte id), different purpose and key.
    with pytest.raises(TokenError):
        signer.read_click(action)
    with pytest.raises(TokenError):
        signer.read_action(signer.click(delivery_id, petition_id))
    for other in (signer.unsubscribe, signer.open, signer.bounce):
        with pytest.raises(TokenError):
            signer.read_action(other(delivery_id))
    with pytest.raises(TokenError):
        TokenSigner("another-secret-" + "y" * 40).read_action(action)


@given(st.text(max_size=80))
def test_arbitrary_text_is_never_an_action_token(text: str) -> None:
    with pytest.raises(TokenError):
        signer.read_action(text)


def test_tokens_in_mail_already_sent_still_open_after_an_upgrade() -> None:
    """Tokens made by an earlier release with a known secret: the same bytes still verify
    (and are still made), however the HMAC is computed inside."""
    old = TokenSigner("correct horse battery staple")
    made = {
        "click": ("AQEAAAAAABLWhwAAACqrYoxnE9qO01qYHPLUHj2R", old.click(1234567, 42)),
        "unsubscribe": ("AQIAAAAAABLWh1FzM2snGMLPkmQmHQEwXB8", old.unsubscribe(1234567)),
        "bounce": ("AQMAAAAAAAAAB1sQeG0UXS1OeLDVCCSsS78", old.bounce(7)),
        "open": ("AQQAAAAAAAAABydE8bKg5rlfcfFE5gRGi9Y", old.open(7)),
        "action": ("AQUAAAAAAAAAYwAAAAMH2WFz1ALpjp5qfEGdwgde", old.action(99, 3)),
        "confirm": ("AQYAAAAAAAAABQAAAANwRvXuqjKCaANhQXYxl5YO", old.confirm(5, 3)),
    }
    assert {kind: known for kind, (known, _) in made.items()} == {
        kind: now for kind, (_, now) in made.items()
    }
    click = old.read_click(made["click"][0])
    assert (click.delivery_id, click.link_id) == (1234567, 42)
    assert old.read_unsubscribe(made["unsubscribe"][0]).delivery_id == 1234567
    assert old.read_bounce(made["bounce"][0]) == 7
    assert old.read_open(made["open"][0]) == 7
    action = old.read_action(made["action"][0])
    assert (action.delivery_id, action.petition_id) == (99, 3)
    assert old.read_confirm(made["confirm"][0]) == (5, 3)
