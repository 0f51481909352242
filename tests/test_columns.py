"""Column titles and cell text (``mailer.supporters.columns``), alone: no file, no database.

Every spelling of a known header is recognized; cleaned text never keeps a
control character or a line break; languages come down to their primary code.
"""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailer.supporters import ALIASES, clean_text, normalize_header, normalize_language

_FORBIDDEN = frozenset({"Cc", "Zl", "Zp"})


@given(st.text())
def test_clean_text_never_leaves_control_characters(value: str) -> None:
    cleaned = clean_text(value)
    assert not any(unicodedata.category(char) in _FORBIDDEN for char in cleaned)
    assert "\n" not in cleaned
    assert "\r" not in cleaned
    assert cleaned == cleaned.strip()
    assert "  " not in cleaned
    assert clean_text(cleaned) == cleaned


@given(st.text(alphabet=st.sampled_from("ab \t\n\r\x00\u2028\u2029\x85-")))
def test_clean_text_keeps_the_words(value: str) -> None:
    # Whitespace-like controls separate words; NUL carries nothing and just goes.
    spaced = value.replace("\x00", "")
    words = "".join(char if char in "ab-" else " " for char in spaced).split()
    assert clean_text(value) == " ".join(words)


@given(st.text())
def test_normalize_header_is_idempotent_and_has_no_spaces_or_hyphens(title: str) -> None:
    key = normalize_header(title)
    assert normalize_header(key) == key
    assert " " not in key
    assert "-" not in key


@st.composite
def spelled_alias(draw: st.DrawFn) -> tuple[str, str]:
    """A known header spelling in random case with random spaces/hyphens for "_"."""
    spelling = draw(st.sampled_from(sorted(ALIASES)))
    joiner = st.text(alphabet=" -", min_size=1, max_size=3)
    parts = spelling.split("_")
    title = parts[0]
    for part in parts[1:]:
        title += draw(st.one_of(st.just("_"), joiner)) + part
    title = "".join(c.upper() if draw(st.booleans()) else c for c in title)
    pad = st.text(alphabet=" \t", max_size=2)
    return draw(pad) + title + draw(pad), ALIASES[spelling]


@given(spelled_alias())
def test_every_alias_spelling_is_recognized(case: tuple[str, str]) -> None:
    title, field = case
    assert ALIASES[normalize_header(title)] == field


@pytest.mark.parametrize(
    ("title", "field"),
    [
        ("Email", "email"),
        ("E-mail", "email"),
        ("email_address", "email"),
        ("Email Address", "email"),
        ("MAIL", "email"),
        ("First Name", "first_name"),
        ("first_name", "first_name"),
        ("FirstName", "first_name"),
        ("Given-Name", "first_name"),
        ("Surname", "last_name"),
        ("family name", "last_name"),
        ("  Zip   Code ", "zip"),
        ("Postal-Code", "zip"),
        ("State", "region"),
        ("Province", "region"),
        ("Preferred Language", "language"),
        ("Locale", "language"),
    ],
)
def test_header_spellings(title: str, field: str) -> None:
    assert ALIASES[normalize_header(title)] == field


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("es", "es"),
        ("ES", "es"),
        ("es-MX", "es"),
        ("es_US", "es"),
        ("Spanish", "es"),
        ("español", "es"),
        ("Espanol", "es"),
        (" ESPAÑOL ", "es"),
        ("en", "en"),
        ("English", "en"),
        ("en-US", "en"),
        ("", "en"),
        ("   ", "en"),
        ("fr-CA", "fr"),
        ("pt_BR", "pt"),
        ("Vi", "vi"),
        ("zh-Hant-TW", "zh"),
        ("en_US.UTF-8", "en"),
        ("Klingon", "klingon"),
    ],
)
def test_normalize_language(value: str, code: str) -> None:
    assert normalize_language(value) == code
