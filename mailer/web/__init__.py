"""The HTTP app: clicks, opens, unsubscribes, petition pages, the admin and its API.

``app.py`` builds the app, ``actions.py`` serves the petition pages,
``admin/`` the admin pages and JSON API, and ``common.py`` holds what they
share (the body reader, page templates, headers, languages, client addresses).
"""

from mailer.web.app import app_for, create_app

__all__ = ["app_for", "create_app"]
