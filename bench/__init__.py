"""Benchmarks of the mailer: a ceiling, a floor, and where the mailer falls between them.

Run with ``make bench`` (``.venv/bin/python -m bench``); ``--quick`` for a
smoke run. It prints figures and never asserts timings: a benchmark is a
measurement, not a test, and belongs outside the test suite (DESIGN.md,
"Performance, measured not assumed").

Method
======

Everything happens in one run, on one machine, over 127.0.0.1 only, into one
receiving server started on a free high port:

ceiling
    Postfix's ``smtp-source`` blasting 14 KB messages over 16 parallel,
    reused sessions (``-d -s 16 -m N -l 14000``) into Postfix's ``smtp-sink``,
    which accepts and discards. Two C programs doing nothing but SMTP: no
    Python program sending into the same sink on the same machine can be
    faster, so this is the "messages per second handed to a local SMTP
    server" that the hardware allows. Median of 3 runs. Postfix is installed
    with apt-get when missing (see :mod:`bench.postfix`); if that is
    impossible the ceiling is reported as not measured, and the other stages
    use an aiosmtpd server that discards (slower, so their figures are then
    lower bounds).
floor
    The naive loop anyone would write first (:mod:`bench.floor`): per
    recipient a Jinja render of the real alert template, an
    ``email.message.EmailMessage`` with text and HTML parts, and
    ``smtplib.SMTP.send_message`` over one connection. No database.
mailer end to end
    The real path (:mod:`bench.e2e`): a CSV of N synthetic supporters
    (2:1 English/Spanish) imported into a fresh SQLite database, a blast
    created, and :func:`mailer.blasts.send_now` timed while it claims,
    composes (render, tracking links, signed tokens, MIME), sends with
    aiosmtplib and records every delivery. Run for two sizes of list; the
    import and the send each run in a fresh subprocess so ``ru_maxrss`` (a
    high-water mark) shows the send's own peak memory, which should stay
    flat as the list grows. In the send process, ``AlertComposer.compose``
    and ``SmtpTransport.deliver`` are wrapped with a stopwatch, so the run
    itself says how its time splits into composing, delivering and the rest
    (claiming and recording batches, the event loop); the rate over the
    first and the second half of the list shows whether it slows down.
breakdown
    Per-message cost in µs of each step, from timing loops over a few
    thousand synthetic supporters with no network (:mod:`bench.breakdown`),
    to show where the end-to-end time goes.

Why ratios
==========

The machines this runs on are shared and small (2 cores): the same code
measures differently from one run to the next, and differently on each
machine. Absolute times are therefore only indicative. What carries over is
the *ratio*: the mailer's rate as a fraction of the ceiling measured a few
seconds earlier on the same machine, and as a multiple of the floor. A change
that moves the mailer from 0.02 to 0.2 of the ceiling is real however noisy
the machine; a change from 120 to 130 msg/s is not, on its own.

Note that the sink receives on the same 2 cores as the sender, so every
stage shares the CPU with its receiver; smtp-sink is cheap enough that this
matters little except for the ceiling itself.
"""
