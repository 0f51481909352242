"""Supporters: importing them from CSV files into mailing lists."""

from mailer.supporters.columns import (
    ALIASES,
    clean_text,
    normalize_header,
    normalize_language,
)
from mailer.supporters.importer import ImportSummary, Reject, import_csv, write_rejects

__all__ = [
    "ALIASES",
    "ImportSummary",
    "Reject",
    "clean_text",
    "import_csv",
    "normalize_header",
    "normalize_language",
    "write_rejects",
]
