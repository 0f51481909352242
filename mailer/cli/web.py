"""`mailer web`: serve the HTTP app (click redirects, unsubscribe pages)."""

from __future__ import annotations

import click
import uvicorn

from mailer.cli import AppContext, pass_app
from mailer.web import app_for


@click.command("web")
@click.option("--host", default=None, help="Address to listen on. Default: web.host.")
@click.option("--port", default=None, type=int, help="Port to listen on. Default: web.port.")
@pass_app
def web_command(app: AppContext, host: str | None, port: int | None) -> None:
    """Serve the HTTP app that records clicks and handles unsubscribes."""
    settings = app.settings
    settings.require("security.secret_key")
    asgi = app_for(app.db(), settings)
    uvicorn.run(
        asgi, host=host or settings.web.host, port=port or settings.web.port, log_level="info"
    )


COMMANDS = [web_command]
