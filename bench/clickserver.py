"""``python -m bench.clickserver``: the HTTP apps that :mod:`bench.clicks` loads with wrk.

``python -m bench.clickserver real DATABASE_URL PORT STATS_JSON [--cpu N]``
    the mailer's real public app (:func:`mailer.web.app_for` with the bench's
    settings) on the database at DATABASE_URL. On SIGTERM uvicorn shuts down
    gracefully: it stops accepting, finishes the requests in hand, and the
    app's lifespan stops the click writer, which drains its queue first. Then
    the process writes what its click writer did to STATS_JSON: for each
    transaction, when it was committed, how many clicks it stored and the
    writer thread's CPU time for it, so that clicks per commit and CPU per
    click can be printed; and when each new database connection was opened.
    ``--cpu N`` keeps the process (all its threads) on CPU N.
``python -m bench.clickserver bare PORT [--sync]``
    the ceiling: a Starlette app with one route, ``/c/{token}``, answering
    ``302`` to the same kind of URL, with no database and nothing else. Its
    handler is ``async`` (runs on the event loop) unless ``--sync``, which
    makes it a plain function that Starlette runs in its thread pool, as it
    runs the real click handler.

Both are served by uvicorn the same way: one process, one worker, on
127.0.0.1, ``log_level="warning"``. What uvicorn is built with (h11 or
httptools, asyncio or uvloop) is whatever the virtualenv has, the same for
both.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import uvicorn
from sqlalchemy import event
from sqlmodel import Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from mailer.config import WHITE_HOUSE_CONTACT
from mailer.store import Database

HOST = "127.0.0.1"


def bare_app(*, sync: bool = False) -> Starlette:
    """One route, ``/c/{token}``: ``302`` to a fixed URL, no database."""

    async def redirect(request: Request) -> Response:
        return RedirectResponse(WHITE_HOUSE_CONTACT, status_code=302)

    def redirect_in_thread(request: Request) -> Response:
        return RedirectResponse(WHITE_HOUSE_CONTACT, status_code=302)

    return Starlette(routes=[Route("/c/{token}", redirect_in_thread if sync else redirect)])


class CountingDatabase(Database):
    """The database, noting each transaction committed through it and its CPU time.

    Given to the click writer only (:class:`mailer.web.recorder.GroupWriter`
    opens one session per group commit), so every session here is one
    transaction of the writer thread, and ``time.thread_time`` around it is
    that thread's own CPU. ``commits`` holds ``(wall-clock time, rows, CPU
    seconds)`` per commit.
    """

    def __init__(self, db: Database) -> None:
        super().__init__(db.engine)
        self.commits: list[tuple[float, int, float]] = []
        self._lock = threading.Lock()

    @contextmanager
    def session(self) -> Iterator[Session]:
        start = time.thread_time()
        with super().session() as session:
            yield session
            added = len(session.new)
        with self._lock:
            self.commits.append((time.time(), added, time.thread_time() - start))


def serve(app: Starlette, port: int) -> None:
    """Serve ``app`` until SIGTERM (or SIGINT); return after uvicorn's graceful shutdown."""
    # uvicorn re-raises the signal that stopped it once it has shut down, under the
    # handler that was in place before it ran: with this one, that returns here.
    signal.signal(signal.SIGTERM, lambda *_: None)
    uvicorn.run(app, host=HOST, port=port, log_level="warning")


def serve_real(database_url: str, port: int, stats: Path) -> None:
    from bench.common import settings_for
    from mailer.store import open_database
    from mailer.web import app_for
    from mailer.web.recorder import GroupWriter

    db = open_database(database_url)
    counting = CountingDatabase(db)
    connects: list[float] = []  # when each new database connection was opened
    event.listen(db.engine, "connect", lambda *_: connects.append(time.time()))

    def counted_writer(_db: Database) -> GroupWriter:
        return GroupWriter(counting)

    # The app makes its own GroupWriter(db); hand it the counting database instead.
    with mock.patch("mailer.web.app.GroupWriter", counted_writer):
        app = app_for(db, settings_for(port=0))
    serve(app, port)  # returns after SIGTERM, once the lifespan has stopped the writer
    db.dispose()
    stats.write_text(json.dumps({"commits": counting.commits, "connects": connects}))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.clickserver", description=__doc__)
    apps = parser.add_subparsers(dest="app", required=True)
    real = apps.add_parser("real")
    real.add_argument("database_url")
    real.add_argument("port", type=int)
    real.add_argument("stats", type=Path)
    real.add_argument("--cpu", type=int, help="run the whole process on this CPU only")
    bare = apps.add_parser("bare")
    bare.add_argument("port", type=int)
    bare.add_argument("--sync", action="store_true")
    args = parser.parse_args(argv)
    if args.app == "real":
        if args.cpu is not None:
            os.sched_setaffinity(0, {args.cpu})  # before any thread starts: they all inherit it
        serve_real(args.database_url, args.port, args.stats)
    else:
        serve(bare_app(sync=args.sync), args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
