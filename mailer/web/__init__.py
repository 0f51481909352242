"""The HTTP app: click redirects, unsubscribe pages (and later admin pages)."""

from mailer.web.app import create_app

__all__ = ["create_app"]
