"""`mailer web`: serve the HTTP app (tracking, unsubscribes, action pages, admin, API)."""

from __future__ import annotations

import signal

import click
import uvicorn

from mailer.cli import AppContext, pass_app
from mailer.clients import proxy_options
from mailer.web import app_for


@click.command("web")
@click.option("--host", default=None, help="Address to listen on. Default: web.host.")
@click.option("--port", default=None, type=int, help="Port to listen on. Default: web.port.")
@pass_app
def web_command(app: AppContext, host: str | None, port: int | None) -> None:
    """Serve the HTTP app: click and open tracking, unsubscribe and action pages, the
    web admin and its JSON API. SIGTERM stops it gracefully (requests in hand are
    finished, clicks written) with exit status 0."""
    settings = app.settings
    settings.require("security.secret_key")
    asgi = app_for(app.db(), settings)
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again under the
    # handler that was in place before it ran; with the default one the process would
    # end "killed by SIGTERM" (-15) after a clean stop. This one lets it return.
    signal.signal(signal.SIGTERM, lambda *_: None)
    uvicorn.run(
        asgi,
        host=host or settings.web.host,
        port=port or settings.web.port,
        log_level="info",
        **proxy_options(settings.web.trusted_proxies),
    )


COMMANDS = [web_command]
