"""mailer: action alerts for advocacy organizations, from supporter list to click-through."""

__version__ = "0.1.0"
