"""Petitions: the action an alert asks for, signed on the mailer's own pages.

- :mod:`~mailer.petitions.texts`: a petition's title, introduction and
  suggested message per language, read from the alert template's
  ``petition.toml``.
- :mod:`~mailer.petitions.store`: creating, finding and listing petitions.
- :mod:`~mailer.petitions.signing`: checking a submitted form and storing
  the signature (one per address per petition).
- :mod:`~mailer.petitions.report`: a petition's figures.
- :mod:`~mailer.petitions.export`: the signatures as CSV and as a printable
  delivery document.
"""
