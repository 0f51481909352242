"""The admin pages under ``/admin``: sign-in, dashboard, blast, send log, supporters, users.

Pages are rendered on the server from Jinja templates in
``mailer/web/templates/admin/``; the only other file is our own stylesheet.
Figures come from :mod:`mailer.report`, actions from
:mod:`mailer.web.admin.actions` (the same code the CLI runs). After an
action the browser is sent back (303) to the page with a short notice.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from mailer.accounts import Permission
from mailer.web.admin.blast_pages import BlastPages
from mailer.web.admin.home import HomePages
from mailer.web.admin.log_pages import LogPages
from mailer.web.admin.people import PeoplePages
from mailer.web.admin.site import STATIC


class AdminPages(HomePages, BlastPages, LogPages, PeoplePages):
    """Every admin page, and the routes that lead to them."""

    # -- routes -------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        page = self.guard.page
        read, blasts, manage = Permission.READ, Permission.BLASTS, Permission.MANAGE

        def css(request: Request) -> Response:
            return FileResponse(STATIC / "admin.css", media_type="text/css")

        def home(request: Request) -> Response:
            return RedirectResponse("/admin/", status_code=307)

        return [
            Route("/admin", home, methods=["GET"]),
            Route("/admin/static/admin.css", css, methods=["GET"]),
            Route("/admin/login", self.login_form, methods=["GET"]),
            Route("/admin/login", self.login, methods=["POST"]),
            Route("/admin/logout", page(read, self.logout), methods=["POST"]),
            Route("/admin/", page(read, self.dashboard), methods=["GET"]),
            Route("/admin/blasts/new", page(blasts, self.new_blast), methods=["GET"]),
            Route("/admin/blasts", page(blasts, self.create_blast), methods=["POST"]),
            Route("/admin/blasts/{ref}", page(read, self.blast_page), methods=["GET"]),
            Route(
                "/admin/blasts/{ref}/preview.html", page(read, self.preview_html), methods=["GET"]
            ),
            Route("/admin/blasts/{ref}/log", page(read, self.send_log), methods=["GET"]),
            Route("/admin/blasts/{ref}/log.csv", page(read, self.send_log_csv), methods=["GET"]),
            Route("/admin/blasts/{ref}/schedule", page(blasts, self.schedule), methods=["POST"]),
            Route("/admin/blasts/{ref}/test", page(blasts, self.test_send), methods=["POST"]),
            Route(
                "/admin/blasts/{ref}/{action:str}",
                page(blasts, self.blast_action),
                methods=["POST"],
            ),
            Route("/admin/supporters", page(read, self.supporters), methods=["GET"]),
            Route("/admin/supporters/{id}", page(read, self.supporter), methods=["GET"]),
            Route(
                "/admin/supporters/{id}/unsubscribe",
                page(manage, self.unsubscribe),
                methods=["POST"],
            ),
            Route("/admin/suppressions", page(manage, self.suppressions), methods=["GET"]),
            Route("/admin/suppressions", page(manage, self.suppress), methods=["POST"]),
            Route("/admin/users", page(manage, self.users), methods=["GET"]),
            Route("/admin/users", page(manage, self.add_user), methods=["POST"]),
            Route(
                "/admin/users/{name}/{change:str}",
                page(manage, self.set_disabled),
                methods=["POST"],
            ),
        ]
