"""The classifier against real reports: the corpus in tests/data/bounces/ (see SOURCES.md).

Targets from the project: a supporter wrongly stopped is a supporter lost, so
hard-bounce precision comes first. ``python -m bench.bounces --misses`` shows
the confusion table and every miss.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.bounces import CORPUS, Scores, evaluate, labels


@pytest.fixture(scope="module")
def scores() -> Scores:
    return evaluate()


def test_the_corpus_is_real_sized_and_licensed() -> None:
    rows = labels()
    systems = {re.sub(r"-\d+\.eml$", "", row.file) for row in rows}
    assert len(rows) >= 250 and len(systems) >= 40
    assert (CORPUS / "SOURCES.md").is_file() and (CORPUS / "sisimai" / "LICENSE").is_file()
    files = {p.name for p in (CORPUS / "sisimai").glob("*.eml")}
    assert files == {row.file for row in rows}  # every message labelled, every label a file
    size = sum(p.stat().st_size for p in Path(CORPUS).rglob("*") if p.is_file())
    assert size < 4_000_000


def test_hard_bounces_are_precise(scores: Scores) -> None:
    assert scores.precision("hard") >= 0.98


def test_hard_bounces_are_found(scores: Scores) -> None:
    assert scores.recall("hard") >= 0.95


def test_complaints_are_found(scores: Scores) -> None:
    # Unsubscribe requests count: Apple Mail's one-tap request, a bare "unsubscribe"
    # (tests/test_inbound.py: acted on only with the token of the address it was sent to).
    assert scores.recall("complaint") >= 0.95


def test_the_bounced_address_is_found(scores: Scores) -> None:
    assert scores.address_rate >= 0.95


def test_no_report_takes_a_second(scores: Scores) -> None:
    assert scores.slowest.seconds < 1.0, scores.slowest.label.file
