"""A supporter file imported through the web admin's upload vs ``mailer import``: time and memory.

``python -m bench.upload [--n 200000]`` writes a CSV of N synthetic
supporters, then runs each path in a fresh child process on a fresh SQLite
database and prints its seconds and the child's peak RSS:

``cli``
    :func:`mailer.supporters.import_csv`, the function behind ``mailer import``
    (without the command-line start-up).
``web``
    the whole app on a local port (uvicorn in a thread) and an HTTP client in
    the same process: sign in, upload the file (streamed from disk by the
    client), the check page, confirm, and poll ``/status`` every 0.2 s until
    the import is done. Its peak RSS includes the client's.

Figures are printed, never asserted; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, peak_rss_mb, settings_for, write_supporters_csv

LIST = "bench"
PASSWORD = "bench password 123"


def run_cli(path: Path, url: str) -> dict[str, Any]:
    from mailer.store import open_database
    from mailer.supporters import import_csv

    db = open_database(url, create=True)
    start = time.perf_counter()
    summary = import_csv(db, path, LIST)
    seconds = time.perf_counter() - start
    db.dispose()
    return {"path": "cli", "rows": summary.added, "seconds": seconds, "peak_rss_mb": peak_rss_mb()}


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]*)"', html)
    if found is None:
        raise SystemExit("no CSRF field in the page")
    return found.group(1)


def run_web(path: Path, url: str, uploads: Path) -> dict[str, Any]:
    import dataclasses

    import httpx

    from mailer import accounts
    from mailer.devsmtp import free_port
    from mailer.store import open_database
    from mailer.store.models import UserRole, utcnow
    from mailer.web import create_app
    from mailer.web.admin import admin_routes
    from mailer.web.server import BackgroundServer

    base = settings_for(port=0)
    settings = dataclasses.replace(
        base, import_=dataclasses.replace(base.import_, upload_dir=str(uploads))
    )
    db = open_database(url, create=True)
    accounts.add_user(db, "bench", UserRole.ORGANIZER, PASSWORD, actor="bench", now=utcnow())
    app = create_app(db, settings.security.secret_key, extra_routes=admin_routes(db, settings))
    with (
        BackgroundServer(app, port=free_port()) as server,
        httpx.Client(base_url=server.url, timeout=600) as client,
    ):
        login = client.get("/admin/login")
        client.post(
            "/admin/login",
            data={"csrf": _csrf(login.text), "name": "bench", "password": PASSWORD},
        )
        csrf = _csrf(client.get("/admin/").text)
        start = time.perf_counter()
        with path.open("rb") as handle:
            sent = client.post(
                "/admin/lists/upload",
                data={"csrf": csrf},
                files={"file": (path.name, handle, "text/csv")},
            )
        if sent.status_code != 303:
            raise SystemExit(f"upload refused: {sent.status_code} {sent.text[:300]}")
        page = sent.headers["location"].split("?")[0]
        client.get(page)
        uploaded = time.perf_counter()
        client.post(page + "/import", data={"csrf": csrf, "list": LIST})
        while (state := client.get(page + "/status").json())["state"] == "running":
            time.sleep(0.2)
        done = time.perf_counter()
    db.dispose()
    if state["state"] != "done":
        raise SystemExit(f"import failed: {state}")
    return {
        "path": "web",
        "rows": state["summary"]["added"],
        "seconds": done - start,
        "upload_seconds": uploaded - start,
        "import_seconds": done - uploaded,
        "peak_rss_mb": peak_rss_mb(),
    }


def child(kind: str, path: Path, tmp: Path) -> dict[str, Any]:
    url = f"sqlite:///{tmp / f'{kind}.db'}"
    command = [sys.executable, "-m", "bench.upload", "--child", kind, str(path), url, str(tmp)]
    out = subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="supporters in the file")
    parser.add_argument("--child", nargs=4, metavar=("KIND", "FILE", "URL", "TMP"))
    args = parser.parse_args(argv)
    if args.child:
        kind, file, url, tmp = args.child
        result = (
            run_cli(Path(file), url)
            if kind == "cli"
            else run_web(Path(file), url, Path(tmp) / "uploads")
        )
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory(prefix="mailer-bench-upload-") as folder:
        tmp = Path(folder)
        path = tmp / "supporters.csv"
        write_supporters_csv(path, args.n)
        size_mb = path.stat().st_size / 1e6
        print(f"upload: {args.n:,} supporters, {size_mb:.1f} MB, SQLite, fresh database each")
        for kind in ("cli", "web"):
            r = child(kind, path, tmp)
            extra = ""
            if kind == "web":
                extra = (
                    f" (upload and check {r['upload_seconds']:.1f} s,"
                    f" import {r['import_seconds']:.1f} s)"
                )
            print(
                f"  {kind:<4} {r['rows']:>9,} added in {r['seconds']:6.1f} s{extra}, "
                f"peak RSS {r['peak_rss_mb']:.0f} MB"
            )


if __name__ == "__main__":
    main()
