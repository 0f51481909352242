"""From template and supporter to a finished message: Jinja, links, tokens, MIME."""
