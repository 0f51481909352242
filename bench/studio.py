"""How long each studio page takes with a large list: ``python -m bench.studio [--n N]``.

Builds a SQLite database of ``--n`` synthetic supporters (200,000; a third
Spanish speakers; one in 50 unsubscribed, one in 100 suppressed), an alert
started from the seed statement with a Spanish version, and a draft blast of
it to the whole list; serves the whole app (public and admin routes) with
uvicorn on a thread, signs in as an organizer, and requests each studio page
``--repeat`` times (20) over HTTP on 127.0.0.1:
the editor, the preview page, the preview frame, the check (the editor and
the preview run it; the confirmation runs the blast's full check), the
audience count, and the blast's confirmation. Prints the median and the
slowest request of each, in milliseconds. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from bench.common import REPO, settings_for, write_supporters_csv
from mailer import accounts
from mailer.alerts.store import LanguageText, get_revision
from mailer.alerts.studio import check_revision, save_language, start_from_statement
from mailer.blasts import create_blast
from mailer.devsmtp import free_port
from mailer.store import Database, open_database
from mailer.store.models import UserRole, utcnow
from mailer.supporters.importer import import_csv
from mailer.web import create_app
from mailer.web.admin import admin_routes
from mailer.web.server import BackgroundServer

ALERT = "bench-alert"
LIST = "bench"
PASSWORD = "bench password 1"
SPANISH = LanguageText(
    subject="Nos levantamos por la justicia migrante",
    preheader="Escribe hoy a la Casa Blanca",
    body='Hola {{ supporter.first_name or "amiga" }}:\n\nHoy se firmaron dos órdenes.\n\n'
    "=> [Escribe a la Casa Blanca]\n",
)


def _csrf(html: str) -> str:
    marker = 'name="csrf" value="'
    at = html.index(marker) + len(marker)
    return html[at : html.index('"', at)]


def timed(client: httpx.Client, path: str, params: object, repeat: int) -> list[float]:
    """``repeat`` GETs of ``path`` (after one to warm up), each in ms."""
    assert client.get(path, params=params).status_code == 200, path  # type: ignore[arg-type]
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        answer = client.get(path, params=params)  # type: ignore[arg-type]
        out.append((time.perf_counter() - start) * 1000)
        assert answer.status_code == 200, (path, answer.status_code)
    return out


def leave_some(db: Database) -> tuple[int, int]:
    """Unsubscribe one supporter in 50 and suppress the address of one in 100, as lists
    that have been mailed for a while look (the audience count must leave them out)."""
    with db.session() as session:
        gone: Any = session.execute(
            text("UPDATE supporter SET status = 'unsubscribed' WHERE id % 50 = 7")
        )
        held: Any = session.execute(
            text(
                "INSERT INTO suppression (email, reason, source, created_at) "
                "SELECT email, 'complaint', 'bench', NULL FROM supporter WHERE id % 100 = 3"
            )
        )
    return int(gone.rowcount), int(held.rowcount)


def run(n: int, repeat: int) -> None:
    settings = settings_for(port=free_port())
    with tempfile.TemporaryDirectory(prefix="mailer-bench-studio-") as tmp:
        db = open_database(f"sqlite:///{Path(tmp) / 'studio.db'}", create=True)
        csv_path = Path(tmp) / "supporters.csv"
        write_supporters_csv(csv_path, n)
        start = time.perf_counter()
        import_csv(db, csv_path, LIST)
        print(f"setup: {n:,} supporters imported in {time.perf_counter() - start:.1f} s")
        gone, held = leave_some(db)
        print(f"       {gone:,} of them unsubscribed, {held:,} addresses suppressed")
        statement = (REPO / "tests" / "data" / "statement.txt").read_text("utf-8")
        start_from_statement(db, ALERT, statement, author="bench")
        save_language(db, ALERT, "es", SPANISH, author="bench", based_on=1)
        blast = create_blast(db, settings, name="bench", template=ALERT, list_names=[LIST])
        accounts.add_user(db, "org", UserRole.ORGANIZER, PASSWORD, actor="bench", now=utcnow())
        assert not [f for f in check_revision(db, settings, ALERT) if f.is_error]
        print(f"alert revision {get_revision(db, ALERT).number}, blast {blast.id}")
        app = create_app(db, settings.security.secret_key, extra_routes=admin_routes(db, settings))
        with (
            BackgroundServer(app, port=free_port()) as server,
            httpx.Client(base_url=server.url, timeout=120) as client,
        ):
            login = client.get("/admin/login")
            client.post(
                "/admin/login",
                data={"csrf": _csrf(login.text), "name": "org", "password": PASSWORD},
            )
            edit = f"/admin/studio/alerts/{ALERT}"
            pages = [
                ("editor (with its check)", edit, {"lang": "es"}),
                ("preview page (with its check)", f"{edit}/preview", {"lang": "es"}),
                ("preview frame (HTML part)", f"{edit}/frame.html", {"lang": "es"}),
                ("audience count, whole list", "/admin/studio/count", {"lists": LIST}),
                (
                    "audience count, segment language=es",
                    "/admin/studio/count",
                    {"lists": LIST, "segment": "language=es"},
                ),
                ("send form", "/admin/studio/send", {"alert": ALERT}),
                ("confirmation (count + full check)", f"/admin/studio/blasts/{blast.id}", {}),
            ]
            print(f"\n{'page':40} {'median ms':>10} {'slowest ms':>11}   ({repeat} requests)")
            for label, path, params in pages:
                times = timed(client, path, params, repeat)
                print(f"{label:40} {statistics.median(times):10.1f} {max(times):11.1f}")
        db.dispose()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.studio", description=__doc__)
    parser.add_argument("--n", type=int, default=200_000, help="supporters (200,000)")
    parser.add_argument("--repeat", type=int, default=20, help="requests per page (20)")
    args = parser.parse_args(argv)
    run(args.n, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
