"""Alerts kept in the database, with revisions: what organizers write in the studio.

``store`` saves and reads revisions (and says which translations are missing
or out of date); ``markdown`` compiles a Markdown body into the Jinja bodies a
template folder has; ``compiled`` makes a revision an ``AlertTemplate`` the
composer, sender, check and preview take unchanged; ``folders`` imports and
exports template folders; ``resolve`` picks a blast's template; ``statement``
drafts an alert from a pasted statement; ``studio`` holds what the studio's
pages call (save, preview, check, start from a statement).
"""
