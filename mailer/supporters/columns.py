"""Columns and values of supporter files: header names, cleaning, checking rows.

These are the database-free parts of the importer:

* :func:`normalize_header` turns a column title into a key (``"First Name"``
  and ``"first-name"`` both become ``"first_name"``), and :data:`ALIASES` maps
  the usual spellings of each stored field onto the field's name.
* :func:`clean_text` makes a cell safe to store: supporter names end up in
  email headers, so no value may carry a line break or any other control
  character.
* :func:`normalize_language` reduces whatever a spreadsheet says about
  language ("Spanish", "es-MX", "español") to a lowercase primary subtag.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from email_validator import EmailNotValidError, caching_resolver, validate_email
from sqlmodel import SQLModel

from mailer.errors import ImportFileError
from mailer.store.models import Supporter

#: The stored text fields a file may fill, in the order they are shown.
TEXT_FIELDS: tuple[str, ...] = ("first_name", "last_name", "zip", "region", "language")
# Names go into messages; one with a web address in it is refused (it would be a
# link in the organization's mail that the organization never wrote).
NAME_FIELDS: tuple[str, ...] = ("first_name", "last_name")

_SPELLINGS: dict[str, tuple[str, ...]] = {
    "email": ("email", "e_mail", "email_address", "mail"),
    "first_name": ("first_name", "firstname", "first", "given_name"),
    "last_name": ("last_name", "lastname", "last", "surname", "family_name"),
    "zip": ("zip", "zip_code", "zipcode", "postal_code", "postcode"),
    "region": ("region", "state", "province"),
    "language": ("language", "lang", "preferred_language", "locale"),
}

#: Normalized column title -> stored field. Titles not listed here are custom fields.
ALIASES: dict[str, str] = {
    spelling: field for field, spellings in _SPELLINGS.items() for spelling in spellings
}

# Characters that end a line or are otherwise invisible control codes: C0/C1
# controls (Cc: CR, LF, TAB, NUL, DEL, NEL, ...), U+2028 (Zl) and U+2029 (Zp).
_CONTROL_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})

_HEADER_SEPARATORS = re.compile(r"[ \-]+")
_SUBTAG_SEPARATORS = re.compile(r"[-_\s.@]")

# Language names (lowercase, accents removed) people write instead of codes.
_LANGUAGE_NAMES: dict[str, str] = {
    "english": "en",
    "ingles": "en",
    "spanish": "es",
    "espanol": "es",
    "castellano": "es",
    "french": "fr",
    "francais": "fr",
    "portuguese": "pt",
    "portugues": "pt",
    "vietnamese": "vi",
    "tieng viet": "vi",
    "somali": "so",
    "af soomaali": "so",
    "arabic": "ar",
    "haitian creole": "ht",
    "kreyol": "ht",
    "kreyol ayisyen": "ht",
    "chinese": "zh",
    "korean": "ko",
    "tagalog": "tl",
    "russian": "ru",
}

DEFAULT_LANGUAGE = "en"


def _without_controls(value: str) -> str:
    """``value`` with whitespace-like controls turned into spaces, other controls removed."""
    if value.isprintable():  # fast path: no Cc/Zl/Zp (nor other non-printables) at all
        return value
    kept: list[str] = []
    for char in value:
        if unicodedata.category(char) in _CONTROL_CATEGORIES:
            if char.isspace():  # TAB, CR, LF, VT, FF, NEL, U+2028, U+2029, ...
                kept.append(" ")
            # NUL, DEL, escape codes and the like carry no text: drop them
        else:
            kept.append(char)
    return "".join(kept)


def clean_text(value: str) -> str:
    """Trim ``value``, collapse runs of whitespace, and drop every control character.

    Line breaks and tabs become single spaces (so "Ana\\nMaría" reads
    "Ana María"); other Cc/Zl/Zp characters are removed. The result never
    contains a character of those categories, nor leading, trailing or
    doubled whitespace.
    """
    return " ".join(_without_controls(value).split())


def normalize_header(title: str) -> str:
    """The key of a column title: cleaned, lowercased, runs of spaces/hyphens -> ``_``."""
    return _HEADER_SEPARATORS.sub("_", clean_text(title).lower())


def _fold(value: str) -> str:
    """Lowercase ``value`` and remove accents ("Español" -> "espanol")."""
    decomposed = unicodedata.normalize("NFKD", value.lower())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def normalize_language(value: str) -> str:
    """A lowercase primary language subtag: "es-MX", "Spanish", "español" -> "es".

    Empty means English. Names of common languages are recognized; anything
    else is cut at the first ``-``, ``_``, ``.``, ``@`` or space and lowercased
    ("pt_BR" -> "pt", "en_US.UTF-8" -> "en").
    """
    cleaned = clean_text(value)
    if not cleaned:
        return DEFAULT_LANGUAGE
    folded = _fold(cleaned)
    if folded in _LANGUAGE_NAMES:
        return _LANGUAGE_NAMES[folded]
    primary = _SUBTAG_SEPARATORS.split(folded, maxsplit=1)[0]
    return _LANGUAGE_NAMES.get(primary, primary) or DEFAULT_LANGUAGE


def max_length(field: str, model: type[SQLModel] = Supporter) -> int | None:
    """The longest value ``model`` accepts in ``field`` (None: no limit)."""
    info = model.model_fields.get(field)
    if info is None:
        return None
    for constraint in info.metadata:
        limit = getattr(constraint, "max_length", None)
        if isinstance(limit, int):
            return limit
    return None


@dataclass(frozen=True)
class Column:
    index: int
    title: str  # as written in the file
    key: str  # the stored field, or the custom field's key
    custom: bool


@dataclass(frozen=True)
class Row:
    """An accepted record, cleaned: only non-empty stored fields and custom values."""

    line: int
    email: str  # ASCII form, lowercased
    fields: dict[str, str]
    custom: dict[str, str]


def map_columns(titles: list[str], name: str, line: int) -> list[Column]:
    """The columns of the header ``titles`` (from file ``name``, at ``line``).

    Raises :class:`ImportFileError` when there is no email column or when two
    columns mean the same field. An untitled column is called ``column_<n>``.
    """
    columns: list[Column] = []
    seen: dict[str, str] = {}
    stored = set(ALIASES.values())
    for index, title in enumerate(titles):
        normalized = normalize_header(title) or f"column_{index + 1}"
        key = ALIASES.get(normalized, normalized)
        if key in seen:
            raise ImportFileError(
                f"{name}, line {line}: columns {seen[key]!r} and {title!r} both mean "
                f"{key!r}; keep one of them"
            )
        seen[key] = title
        columns.append(Column(index, title, key, key not in stored))
    if "email" not in seen:
        found = ", ".join(repr(title) for title in titles)
        raise ImportFileError(
            f"{name}, line {line}: no email column (found {found}); "
            "name the column of addresses 'email'"
        )
    return columns


def normalize_email(
    value: str, *, check_deliverability: bool = False, resolver: Any = None
) -> tuple[str, str]:
    """``(address, "")``: the ASCII, lowercased form everything is stored under, or
    ``("", problem)`` for an address email-validator refuses."""
    address = value.strip()
    if not address:
        return "", "email: missing"
    try:
        result = validate_email(
            address,
            check_deliverability=check_deliverability,
            allow_smtputf8=False,
            dns_resolver=resolver,
        )
    except EmailNotValidError as exc:
        return "", f"email: {exc}"
    if result.ascii_email is None:  # not reached with allow_smtputf8=False
        return "", "email: has no ASCII form"
    return result.ascii_email.lower(), ""


def masked_address(email: str) -> str:
    """``email`` as a page may show it to whoever holds a link: the first character of
    the local part and the domain (``p•••@example.org``), never the whole address."""
    local, at, domain = email.partition("@")
    return f"{local[:1]}•••{at}{domain}"


def lookup_form(text: str) -> str:
    """What to look ``text`` up by: its stored form (:func:`normalize_email`) when it is a
    whole address, so ``sup@bücher.example`` finds ``sup@xn--bcher-kva.example``; else the
    text lowercased (a prefix being typed)."""
    email, problem = normalize_email(text)
    return text.strip().lower() if problem else email


class RowChecker:
    """Turns raw records into a :class:`Row`, or a reason for rejecting them."""

    def __init__(self, columns: list[Column], *, check_deliverability: bool = False) -> None:
        self.columns = columns
        self.check_deliverability = check_deliverability
        # One resolver for the whole file, so each domain is looked up once.
        self.resolver = caching_resolver(timeout=10) if check_deliverability else None
        self.limits = {key: max_length(key) for key in TEXT_FIELDS}

    def raw(self, values: list[str]) -> dict[str, str]:
        """``values`` under the file's own titles; values past the header as ``extra_<n>``."""
        row = {column.title: values[column.index] for column in self.columns[: len(values)]}
        for extra, value in enumerate(values[len(self.columns) :], start=1):
            row[f"extra_{extra}"] = value
        return row

    def email(self, value: str) -> tuple[str, str]:
        """``(address, "")`` for a valid address, ``("", problem)`` otherwise."""
        return normalize_email(
            value, check_deliverability=self.check_deliverability, resolver=self.resolver
        )

    def check(self, line: int, values: list[str]) -> Row | str:
        """The cleaned row at ``line``, or why it cannot be imported."""
        width = len(self.columns)
        if len(values) > width and any(value.strip() for value in values[width:]):
            return f"{len(values)} fields but the header has {width}"
        problems: list[str] = []
        email = ""
        fields: dict[str, str] = {}
        custom: dict[str, str] = {}
        for column in self.columns:
            value = values[column.index] if column.index < len(values) else ""
            if column.key == "email":
                email, problem = self.email(value)
                if problem:
                    problems.append(problem)
                continue
            cleaned = clean_text(value)
            if not cleaned:
                continue
            if column.custom:
                custom[column.key] = cleaned
                continue
            if column.key == "language":
                cleaned = normalize_language(cleaned)
            limit = self.limits[column.key]
            if limit is not None and len(cleaned) > limit:
                problems.append(
                    f"{column.key}: too long ({len(cleaned)} characters, at most {limit})"
                )
            elif column.key in NAME_FIELDS and "://" in cleaned:
                problems.append(f"{column.key}: contains a web address ('://'), not a name")
            fields[column.key] = cleaned
        if problems:
            return "; ".join(problems)
        return Row(line, email, fields, custom)
