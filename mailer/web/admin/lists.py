"""Mailing lists, and supporter files uploaded into them.

The flow: ``GET /admin/lists`` (the lists and the upload form) → ``POST
/admin/lists/upload`` streams the file to its folder under
``import.upload_dir`` and reads it once (:mod:`mailer.supporters.upload`) →
``GET /admin/lists/uploads/TOKEN`` shows the encoding, the delimiter, the
column mapping and the first rows, and asks for the list → ``POST
.../import`` starts the import in a thread → the same page shows a progress
bar (it reloads itself every second, no script) and then the summary, with
the rejected rows as CSV at ``.../rejects.csv``. ``.../status`` answers the
state as JSON.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import func
from sqlmodel import col, select
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute

from mailer.accounts import Caller, Permission
from mailer.errors import ImportFileError
from mailer.store import MailingList
from mailer.store.models import Membership
from mailer.supporters.columns import max_length
from mailer.supporters.upload import Scanner, Upload, inspect_file, start_import
from mailer.web.admin.guard import BodyReader, Call, same_token
from mailer.web.admin.site import Site
from mailer.web.common import BodyError, Form
from mailer.web.upload import read_upload

REFRESH_SECONDS = 1


def routes(site: Site) -> list[BaseRoute]:
    read, lists = Permission.READ, Permission.BLASTS
    uploads = "/admin/lists/uploads/{token}"
    return [
        site.page("GET", "/admin/lists", read, lists_page),
        site.page("POST", "/admin/lists/upload", lists, uploaded, reader=_reader(site)),
        site.page("GET", uploads, lists, upload_page),
        site.page("POST", uploads + "/import", lists, confirm),
        site.page("GET", uploads + "/status", lists, status),
        site.page("GET", uploads + "/rejects.csv", lists, rejects),
    ]


def _root(site: Site) -> Path:
    return Path(site.settings.import_.upload_dir)


def _limit(site: Site) -> int:
    return site.settings.import_.max_upload_mb * 1024 * 1024


def lists_page(site: Site, call: Call, *, error: str = "", status: int = 200) -> Response:
    members = func.count(col(Membership.supporter_id))
    query = (
        select(MailingList.id, MailingList.name, MailingList.created_at, members)
        .join(Membership, col(Membership.list_id) == col(MailingList.id), isouter=True)
        .group_by(col(MailingList.id), col(MailingList.name), col(MailingList.created_at))
        .order_by(col(MailingList.name))
    )
    with site.db.session() as session:
        rows = [
            {"name": name, "created_at": created, "members": count}
            for _, name, created, count in session.exec(query)
        ]
    return site.render(
        "lists.html",
        call.caller,
        status=status,
        request=call.request,
        error=error,
        lists=rows,
        max_mb=site.settings.import_.max_upload_mb,
    )


# -- receiving the file ------------------------------------------------------------


def _reader(site: Site) -> BodyReader:
    """The body reader of the upload form: the file goes to a new upload's folder."""

    async def read(request: Request, caller: Caller) -> Form:
        def check_token(fields: Form) -> None:
            if not same_token(fields.get("csrf", ""), caller.csrf_token):
                raise BodyError(403, "the form's security token is missing or wrong; reload")

        upload = Upload.new(_root(site))
        scanner = Scanner()
        try:
            form, sent = await read_upload(
                request,
                upload.csv,
                limit=_limit(site),
                watch=scanner.feed,
                before_file=check_token,
            )
        except BodyError as exc:
            shutil.rmtree(upload.folder, ignore_errors=True)
            if exc.status == 403:
                raise
            request.state.upload_error = (exc.status, exc.message)
            return Form({"csrf": [caller.csrf_token]})  # the token was checked, or is not needed
        except BaseException:  # the client went away, or worse: keep nothing
            shutil.rmtree(upload.folder, ignore_errors=True)
            raise
        request.state.upload = (upload, sent.filename or "upload.csv", scanner)
        return form

    return read


def uploaded(site: Site, call: Call) -> Response:
    state = call.request.state
    if hasattr(state, "upload_error"):
        code, message = state.upload_error
        return lists_page(site, call, error=f"Not uploaded: {message}.", status=code)
    upload, name, scanner = state.upload
    try:
        facts = inspect_file(upload.csv, name, scanner)
    except ImportFileError as exc:
        shutil.rmtree(upload.folder, ignore_errors=True)
        return lists_page(site, call, error=f"Not uploaded: {exc}", status=400)
    upload.describe(facts, call.caller.name)
    return site.back(
        f"/admin/lists/uploads/{upload.token}", "File received. Check it, then import."
    )


# -- one upload --------------------------------------------------------------------


def _find(site: Site, call: Call) -> Upload | None:
    return Upload.find(_root(site), call.param("token"))


def _missing(site: Site, call: Call) -> Response:
    return site.message(
        call.caller, 404, "No such upload", "This upload does not exist (or was removed)."
    )


def upload_page(site: Site, call: Call, *, error: str = "", status: int = 200) -> Response:
    upload = _find(site, call)
    if upload is None:
        return _missing(site, call)
    state = upload.status()
    facts = upload.facts()
    with site.db.session() as session:
        names = list(session.exec(select(MailingList.name).order_by(MailingList.name)))
    done = state.get("done_rows", 0)
    return site.render(
        "upload.html",
        call.caller,
        status=status,
        request=call.request,
        error=error,
        token=upload.token,
        facts=facts,
        state=state,
        percent=min(99, done * 100 // facts.rows) if facts.rows else 0,
        refresh=REFRESH_SECONDS if state["state"] == "running" else 0,
        list_names=names,
        list_name=call.form.get("list", ""),
    )


def confirm(site: Site, call: Call) -> Response:
    upload = _find(site, call)
    if upload is None:
        return _missing(site, call)
    list_name = " ".join(call.form.get("list", "").split())
    limit = max_length("name", MailingList) or 200
    if not list_name:
        return upload_page(site, call, error="Name the list to import into.", status=400)
    if len(list_name) > limit:
        return upload_page(
            site, call, error=f"A list name has at most {limit} characters.", status=400
        )
    if not upload.claim():
        return site.back(f"/admin/lists/uploads/{upload.token}", "This file is imported already.")
    start_import(
        site.db,
        upload,
        list_name,
        actor=call.caller.name,
        check_deliverability=site.settings.import_.check_deliverability,
        now=site.clock,
    )
    return site.back(f"/admin/lists/uploads/{upload.token}", f"Importing into {list_name}.")


def status(site: Site, call: Call) -> Response:
    upload = _find(site, call)
    if upload is None:
        return JSONResponse({"error": "no such upload"}, status_code=404)
    state = upload.status()
    state["total_rows"] = upload.facts().rows
    return JSONResponse(state, headers={"Cache-Control": "no-store"})


def rejects(site: Site, call: Call) -> Response:
    upload = _find(site, call)
    if upload is None or not upload.rejects.is_file():
        return _missing(site, call)
    stem = Path(upload.facts().name).stem[:80] or "upload"
    return FileResponse(
        upload.rejects,
        media_type="text/csv; charset=utf-8",
        filename=f"{stem}-rejected.csv",
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )
