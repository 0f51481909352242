"""An organizer uploads a list in a real browser: the check page, the import, the summary.

The file is 1,000 supporters as a spreadsheet would export them, with some
bad rows (addresses with typos, a missing address, a repeated one); the
organizer checks the mapping, imports, and downloads the rows not imported.
Screenshots of each step go to ``var/test-artifacts/``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from playwright.sync_api import Page, expect
from sqlmodel import func, select

from mailer.store import Database, Membership
from tests.admin_helpers import PASSWORD, add_users, serve
from tests.browser import screenshot
from tests.conftest import make_settings

BAD_LINES = {101: "ana.example.org", 202: "", 303: "bo@@example.org"}
REPEATED_LINE = 404  # repeats the address of line 2


def write_supporters(path: Path) -> None:
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out, delimiter=";")
        writer.writerow(["Email", "First Name", "Last Name", "ZIP", "Language"])
        for line in range(2, 1002):
            address = BAD_LINES.get(line, f"supporter{line}@example.org")
            if line == REPEATED_LINE:
                address = "SUPPORTER2@example.org"
            writer.writerow([address, f"Name{line}", "Pérez", "94110", "es" if line % 3 else "en"])


def test_an_organizer_uploads_a_list_and_reads_the_summary(
    sqlite_db: Database, tmp_path: Path, page: Page
) -> None:
    add_users(sqlite_db)
    file = tmp_path / "supporters.csv"
    write_supporters(file)
    settings = make_settings(**{"import": {"upload_dir": str(tmp_path / "uploads")}})  # type: ignore[arg-type]
    with serve(sqlite_db, settings) as base:
        page.goto(f"{base}/admin/")
        page.get_by_label("User name").fill("organizer")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("link", name="Lists").click()
        page.get_by_label("CSV file").set_input_files(str(file))
        screenshot(page, "lists-upload")
        page.get_by_role("button", name="Upload").click()

        expect(page.get_by_text("UTF-8 with byte-order mark")).to_be_visible()
        expect(page.get_by_text("semicolon")).to_be_visible()
        expect(page.get_by_role("button", name="Import 1,000 rows")).to_be_visible()
        screenshot(page, "lists-check")
        page.get_by_label("Import into the list").fill("supporters")
        page.get_by_role("button", name="Import 1,000 rows").click()

        expect(page.get_by_role("heading", name="Imported into supporters")).to_be_visible()
        for line in (*BAD_LINES, REPEATED_LINE):
            expect(page.get_by_role("cell", name=str(line), exact=True)).to_be_visible()
        expect(page.get_by_text("duplicate of line 2")).to_be_visible()
        screenshot(page, "lists-summary")
        with page.expect_download() as download:
            page.get_by_role("link", name="Download the rows not imported (CSV)").click()
        saved = tmp_path / "rejected.csv"
        download.value.save_as(saved)
        rows = list(csv.reader(saved.read_text(encoding="utf-8-sig").splitlines()))
        assert sorted(int(r[0]) for r in rows[1:]) == sorted([*BAD_LINES, REPEATED_LINE])

        page.set_viewport_size({"width": 375, "height": 800})
        screenshot(page, "lists-summary-phone")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
    with sqlite_db.session() as session:
        assert session.exec(select(func.count()).select_from(Membership)).one() == 996
