"""The floor: the naive loop anyone would write first.

Per recipient: render the real alert template with Jinja, build an
``email.message.EmailMessage`` with a text and an HTML part, and send it with
``smtplib.SMTP`` over one connection. No database, no tracking, no pipelining.
"""

from __future__ import annotations

import smtplib
import time
from email.message import EmailMessage

from bench.common import SENDER, TEMPLATE, TEMPLATES, supporter_context
from mailer.compose.templates import AlertTemplate, RenderedAlert


def naive_message(alert: RenderedAlert, to: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"Bench <{SENDER}>"
    msg["To"] = to
    msg["Subject"] = alert.subject
    msg.set_content(alert.text)
    msg.add_alternative(alert.html, subtype="html")
    return msg


def naive_send(port: int, n: int) -> float:
    """Send ``n`` messages the naive way into 127.0.0.1:``port``; return the seconds taken."""
    template = AlertTemplate(TEMPLATES, TEMPLATE)
    start = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for i in range(n):
            ctx = supporter_context(i)
            alert = template.render(ctx, ctx["supporter"]["language"])
            to = ctx["supporter"]["email"]
            smtp.send_message(naive_message(alert, to), SENDER, [to])
    return time.perf_counter() - start
