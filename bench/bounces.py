"""``python -m bench.bounces`` (or ``python -m bench --bounces``): the classifier on real reports.

Reads the labelled corpus in ``tests/data/bounces/`` (``labels.csv``: file,
class, address; see ``SOURCES.md`` there for where the messages come from and
how their labels were made), runs :func:`mailer.inbound.parse.classify` on
every message and prints the confusion table (rows: the label, columns: what
the classifier said), precision and recall per class, how often the bounced
address was found among the reports that name one, and the slowest message.
``--misses`` also lists every message the classifier got wrong.

The targets of the project (asserted by ``tests/test_bounce_corpus.py``):
hard-bounce precision at least 0.98 (a supporter wrongly stopped is a
supporter lost), hard-bounce recall at least 0.95, complaint recall at least
0.95, the right address in at least 0.95 of the reports that name one, and
no message taking a second.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mailer.inbound.parse import classify
from mailer.inbound.status import Kind

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "bounces"
CLASSES = ("hard", "soft", "blocked", "complaint", "unknown")
_CLASS_OF = {
    Kind.HARD_BOUNCE: "hard",
    Kind.SOFT_BOUNCE: "soft",
    Kind.BLOCKED: "blocked",
    Kind.COMPLAINT: "complaint",
    Kind.UNSUBSCRIBE: "complaint",  # both: the supporter asked not to be mailed again
}


def class_of(kind: Kind) -> str:
    """The corpus class of a finding's kind (auto-reply and unknown are "unknown"; an
    unsubscribe request counts as a complaint: both mean "stop mailing me")."""
    return _CLASS_OF.get(kind, "unknown")


@dataclass(frozen=True)
class Label:
    file: str
    klass: str
    addresses: frozenset[str]  # any of them is right; empty when the report names none


@dataclass(frozen=True)
class Result:
    label: Label
    said: str
    address: str
    seconds: float


@dataclass
class Scores:
    results: list[Result] = field(default_factory=list)

    @property
    def confusion(self) -> Counter[tuple[str, str]]:
        return Counter((r.label.klass, r.said) for r in self.results)

    def precision(self, klass: str) -> float:
        said = [r for r in self.results if r.said == klass]
        return sum(r.label.klass == klass for r in said) / len(said) if said else 1.0

    def recall(self, klass: str) -> float:
        real = [r for r in self.results if r.label.klass == klass]
        return sum(r.said == klass for r in real) / len(real) if real else 1.0

    @property
    def naming(self) -> list[Result]:
        """The results whose report names an address."""
        return [r for r in self.results if r.label.addresses]

    @property
    def address_rate(self) -> float:
        named = self.naming
        right = sum(r.address.lower() in r.label.addresses for r in named)
        return right / len(named) if named else 1.0

    @property
    def slowest(self) -> Result:
        return max(self.results, key=lambda r: r.seconds)

    def misses(self) -> list[Result]:
        return [r for r in self.results if r.said != r.label.klass]


def labels(corpus: Path = CORPUS) -> list[Label]:
    """The rows of ``labels.csv``."""
    with (corpus / "labels.csv").open(newline="", encoding="utf-8") as handle:
        return [
            Label(
                file=row["file"],
                klass=row["class"],
                addresses=frozenset(a.lower() for a in row["address"].split()),
            )
            for row in csv.DictReader(handle)
        ]


def evaluate(corpus: Path = CORPUS) -> Scores:
    """Classify every labelled message of ``corpus``."""
    scores = Scores()
    for label in labels(corpus):
        data = (corpus / "sisimai" / label.file).read_bytes()
        started = time.perf_counter()
        finding = classify(data)
        seconds = time.perf_counter() - started
        scores.results.append(
            Result(label, class_of(finding.kind), finding.original_recipient, seconds)
        )
    return scores


def report(scores: Scores, *, misses: bool = False) -> list[str]:
    """The printed figures, one line each."""
    lines = [f"{len(scores.results)} reports; rows: label, columns: classified as", ""]
    lines.append("label".ljust(10) + "".join(c.rjust(10) for c in CLASSES) + "total".rjust(8))
    confusion = scores.confusion
    for real in CLASSES:
        row = [confusion[(real, said)] for said in CLASSES]
        lines.append(
            real.ljust(10) + "".join(str(n).rjust(10) for n in row) + str(sum(row)).rjust(8)
        )
    lines += ["", "class".ljust(10) + "precision".rjust(10) + "recall".rjust(10)]
    for klass in CLASSES:
        lines.append(
            klass.ljust(10) + f"{scores.precision(klass):10.3f}" + f"{scores.recall(klass):10.3f}"
        )
    named = scores.naming
    right = round(scores.address_rate * len(named))
    lines += [
        "",
        f"address right in {right} of {len(named)} reports that name one"
        f" ({scores.address_rate:.3f})",
        f"slowest message: {scores.slowest.label.file} ({scores.slowest.seconds * 1000:.1f} ms)",
    ]
    if misses:
        lines += ["", "misclassified:"]
        lines += [f"  {r.label.file}: {r.label.klass} -> {r.said}" for r in scores.misses()]
        lines += ["", "address wrong:"]
        lines += [
            f"  {r.label.file}: {sorted(r.label.addresses)} -> {r.address!r}"
            for r in named
            if r.address.lower() not in r.label.addresses
        ]
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bounces", description=__doc__)
    parser.add_argument("--misses", action="store_true", help="list every wrong answer")
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="the corpus folder")
    args = parser.parse_args(argv)
    for line in report(evaluate(args.corpus), misses=args.misses):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
