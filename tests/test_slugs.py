"""A petition's slug (``mailer.petitions.store.slugify``), alone: no database."""

from __future__ import annotations

from mailer.petitions.store import slugify


def test_slugify() -> None:
    assert slugify("Executive Orders!") == "executive-orders"
    assert slugify("  ¡Bienvenidos! 2026 ") == "bienvenidos-2026"
    assert slugify("***") == ""
