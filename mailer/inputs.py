"""Reading what people and scripts send: numbers, ids and JSON bodies, strictly.

Forms, admin pages, the API and the CLI read user-given numbers through
these functions, so odd input is a :class:`~mailer.errors.BadInput` naming
the field (answered 4xx), never an exception from deep inside:

- only ASCII digits count: ``str.isdigit()`` also accepts ``²`` and ``١٢٣``,
  which ``int()`` then refuses or reads as a number nobody typed;
- ids stay within the 64-bit integer the databases store (a 23-digit id
  overflows the driver);
- JSON nested past Python's recursion limit is refused, not a ``RecursionError``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from mailer.errors import BadInput

MAX_ID = 2**63 - 1  # the largest value of a BIGINT (PostgreSQL) or INTEGER (SQLite)
_DIGITS = re.compile(r"[0-9]+", re.ASCII)


def is_id(text: str) -> bool:
    """True for ASCII digits naming a value a database id can hold."""
    return _DIGITS.fullmatch(text) is not None and 0 < int(text) <= MAX_ID


def row_id(text: str) -> int:
    """``text`` as a database id, or 0 (which names no row) when it cannot be one."""
    return int(text) if is_id(text) else 0


def whole_number(text: str, *, name: str, maximum: int = MAX_ID) -> int:
    """``text`` as a whole number from 0 to ``maximum``; :class:`BadInput` naming ``name``
    otherwise."""
    value = text.strip()
    if _DIGITS.fullmatch(value) is None or len(value) > len(str(maximum)):
        raise BadInput(f"{name} must be a whole number, got {text[:40]!r}")
    number = int(value)
    if number > maximum:
        raise BadInput(f"{name} must be at most {maximum}, got {value}")
    return number


def json_object(body: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object (an empty body is ``{}``)."""
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except RecursionError:
        raise BadInput("the body is nested too deeply") from None
    except ValueError:
        raise BadInput("the body is not JSON") from None
    if not isinstance(value, dict):
        raise BadInput("the body must be a JSON object")
    return value
