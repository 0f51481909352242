"""The exceptions mailer raises, in one place.

Every error a caller is expected to handle derives from :class:`MailerError`,
and also from the built-in exception it resembles, so ``except LookupError``
still works where that is the natural thing to write::

    Exception
    ├── ConfigError (ValueError)          bad or missing setting; names the key
    │                                       (deliberately *not* a MailerError, so a
    │                                       broad ``except MailerError`` never hides it)
    └── MailerError
        ├── NotFound (LookupError)        no blast / list / supporter by that name or id
        ├── InvalidState (RuntimeError)   the action does not fit the object's state
        │                                   (e.g. sending a blast that is already done)
        ├── ImportFileError (ValueError)  a supporter file that cannot be read at all
        │                                   (not UTF-8, no email column); names file and line
        ├── TemplateProblem (ValueError)  a template that does not load or render;
        │                                   names the template file and line
        ├── TokenError (ValueError)       a tracking/unsubscribe token that is malformed,
        │                                   altered, or signed with another key
        ├── BadInput (ValueError)         a number, id or body a person or script sent that
        │                                   cannot be read (names the field)
        └── TransportError (ConnectionError)
            │                             the SMTP relay cannot be used at all
            │                               (refused, TLS or AUTH failure)
            └── RelayUnavailable          gave up after the configured connection attempts

Library errors (aiosmtplib, SQLAlchemy, Jinja) are translated into these at the
module that talks to the library, with ``raise ... from exc`` so the cause stays
visible in tracebacks.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting is unknown, of the wrong type, or missing. ``key`` names it."""

    def __init__(self, key: str, problem: str, *, source: str | None = None) -> None:
        self.key = key
        self.problem = problem
        self.source = source
        where = f" (in {source})" if source else ""
        super().__init__(f"{key}: {problem}{where}")


class MailerError(Exception):
    """Base class of every error mailer raises on purpose (except ConfigError)."""


class NotFound(MailerError, LookupError):
    """No object matches the given name or id."""


class InvalidState(MailerError, RuntimeError):
    """The requested action does not fit the object's current state."""


class BadInput(MailerError, ValueError):
    """A value sent to a form, page or API that cannot be read; the message names it."""


class ImportFileError(MailerError, ValueError):
    """A supporter file that cannot be imported at all."""


class TemplateProblem(MailerError, ValueError):
    """A template fails to load or render; the message names file and line."""


class TokenError(MailerError, ValueError):
    """A token is malformed, altered or signed with another key."""


class TransportError(MailerError, ConnectionError):
    """The SMTP relay cannot be used (refused, TLS or authentication failure)."""


class RelayUnavailable(TransportError):
    """The relay stayed unreachable through every connection attempt."""
