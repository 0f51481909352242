"""The HTTP app: click redirects, unsubscribe pages (and later admin pages)."""

from mailer.web.app import app_for, create_app

__all__ = ["app_for", "create_app"]
