"""Where the shipped templates and example lists are.

In a source checkout (and an editable install) they are the repository's own
``templates/`` and ``lists/`` folders; a built wheel carries copies inside the
package (``mailer/_bundled/``).
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    bundled = _PACKAGE / "_bundled" / name
    if bundled.is_dir():
        return bundled
    return _PACKAGE.parent / name


def templates_dir() -> Path:
    return _find("templates")


def sample_list() -> Path:
    return _find("lists") / "sample-supporters.csv"
