"""Benchmarks of the mailer: a ceiling, a floor, and where the mailer falls between them.

Run with ``make bench`` (``.venv/bin/python -m bench``); ``--n N`` sets the
list size (20,000), ``--quick`` makes a short run, ``--memory`` measures the
send process's peak memory at 200,000 recipients against 20,000,
``--profile`` profiles one send, ``--clicks`` measures only the click
endpoint under wrk, and ``--million`` imports a million supporters with
``mailer import`` and sends them one DKIM-signed blast with ``mailer blast
send`` and the default settings (:mod:`bench.million`); ``--no-install``
never installs Postfix or wrk. It prints figures and never asserts timings:
a benchmark is a measurement, not a test (DESIGN.md, "Performance, measured
not assumed"). The test suite only runs ``--smoke``, tiny sizes that check
every stage still works
(``tests/test_bench.py``). ``docs/performance.md`` records a run and what it
shows.

Method
======

Everything happens in one run, on one machine, over 127.0.0.1 only, into one
receiving server started on a free high port. First the mailer's real
message is composed (2:1 English/Spanish) to learn its size.

ceiling
    Postfix's ``smtp-source`` blasting N messages of the mailer's size over
    16 parallel, reused sessions (``-d -s 16 -m N -l SIZE``) into Postfix's
    ``smtp-sink``, which accepts and discards. Two C programs doing nothing
    but SMTP: no Python program sending into the same sink on the same
    machine can be faster, so this is the "messages per second handed to a
    local SMTP server" that the hardware allows. Median of 3 runs. Postfix
    is installed with apt-get when missing (see :mod:`bench.postfix`); if
    that is impossible the ceiling is reported as not measured, and the other
    stages use an aiosmtpd server that discards (slower, so their figures
    are then lower bounds).
floor
    The naive loop anyone would write first (:mod:`bench.floor`): per
    recipient a Jinja render of the real alert template, an
    ``email.message.EmailMessage`` with text and HTML parts, and
    ``smtplib.SMTP.send_message`` over one connection. No database.
mailer end to end
    The real path (:mod:`bench.e2e`): a CSV of N synthetic supporters
    imported into a fresh SQLite database and a blast created (once), then
    :func:`mailer.blasts.send_now` timed on a fresh copy of that database
    while it claims, composes (render, tracking links, signed tokens, MIME,
    DKIM), sends over K aiosmtplib connections and records every delivery.
    Six runs: the default ``[sending] connections``, 16, and one sender
    process per CPU core (``[sending] processes``, at least 2) with 16 each,
    each with DKIM off and on (an RSA-2048 key generated for the run; domain
    example.org, selector "bench"); everything else is the default engine
    setting. A run with several processes counts the helpers' CPU (they are
    its children, waited for before it reports) and their start-up (a fresh
    interpreter each) in its time. The send runs in a fresh subprocess,
    whose ``VmHWM`` (the high-water mark of its own memory map;
    ``ru_maxrss`` would carry the bench's peak across ``execve``) is the
    send's own peak memory.

    Where its time goes is measured without stopwatches around
    ``SmtpTransport.deliver`` (with K connections in flight their wall times
    overlap and add up to more than the run): the send process's CPU time
    (``getrusage``), its event-loop thread's CPU time (``time.thread_time``;
    the rest is the engine's database thread), the loop thread's CPU inside
    ``AlertComposer.compose`` (synchronous, so a thread-CPU stopwatch is
    exact), and the receiver's CPU over the same interval (``/proc``). CPU
    per message against wall time per message, and cores busy, say whether
    the sender is bound by its CPU, by the GIL, or by waiting.
SMTP client alone
    ``SmtpTransport`` (pipelining, as smtp-sink offers it) delivering
    pre-composed messages, no database, over 1
    connection (wall time per message against the client's CPU: the
    difference is waiting for the server's replies), over the default number
    of connections and over 16: what the sending side could do if composing
    and recording were free.
isolated loops
    Per-message cost in µs of each step on its own, from timing loops over a
    few thousand synthetic supporters with no network
    (:mod:`bench.breakdown`): Jinja, links and tokens, the MIME builder, the
    DKIM signature (and OpenSSL's RSA-2048 signature alone), compose with
    DKIM off and on, aiosmtplib's per-message DATA preparation, and the
    floor's ``EmailMessage``. The summary's (:mod:`bench.summary`) ``DKIM budget`` line sets what
    a message may cost at the DKIM target (all cores busy) beside what the
    RSA signature and the receiver alone take: whether the target can be
    met on this machine at all.
clicks
    The click endpoint ``GET /c/<token>`` under load (:mod:`bench.clicks`,
    also ``--clicks`` on its own): a blast "sent" to 5,000 synthetic
    supporters, each delivery's message composed to collect its real click
    paths; then ``wrk -t2 -c32 -d10s --latency`` cycling through those paths
    against the mailer's app and, for the ceiling, against a bare Starlette
    redirect with no database, each served by uvicorn in its own process
    (:mod:`bench.clickserver`). Requests per second, p50/p99, the ratio of the
    two, and the ``click`` rows stored during the run against the ``302``
    responses wrk counted (lost clicks); the server's CPU per request by
    thread and the click writer's commits. To see what limits it: the real
    app again with its process kept on one CPU, the bare redirect with its
    handler in the thread pool, the handler's steps in isolated loops, and
    the app's click handler called directly from 1 and 32 threads. wrk is
    installed with apt-get when missing.
``--memory``
    Peak RSS of the send process (default settings, DKIM off) for N/10 and N
    recipients (20,000 and 200,000), each list imported and sent in fresh
    processes, and their ratio; before the large send it prints how long the
    small run suggests it will take.
``--profile``
    One end-to-end send under cProfile on both of its threads, timed by
    thread CPU time (:mod:`bench.cpuprofile`): CPU per message by owner
    (Jinja, links and tokens, MIME, DKIM, aiosmtplib, socket calls,
    SQLAlchemy and sqlite3, asyncio), how often the engine's database jobs
    ran and how many messages each covered, and the top functions by
    tottime. Profiling slows Python code several times over, unevenly, so
    its shares are indicative; the unprofiled figures above are the measure.
``--million [N]``
    The whole path as a user runs it, at scale (:mod:`bench.million`): a CSV
    of N supporters (1,000,000) through ``mailer import`` into a fresh SQLite
    database, then ``mailer blast create`` and ``mailer blast send`` into
    ``smtp-sink`` from a settings file without a ``[sending]`` section, DKIM
    on (RSA-2048). The import time and rate; the blast's start to finish and
    its rate over each tenth of the list (from ``sent_at``, read back through
    its index after the run, so nothing polls the database while it sends);
    the peak RSS (``VmHWM``) of the send process and of every process under
    it, sampled from ``/proc``; deliveries recorded ``sent`` against the
    supporters and against what ``smtp-sink`` counted.

Why ratios
==========

The machines this runs on are shared and small (2 cores): the same code
measures differently from one run to the next, and differently on each
machine. Absolute times are therefore only indicative. What carries over is
the *ratio*: the mailer's rate as a fraction of the ceiling measured a few
seconds earlier on the same machine, and as a multiple of the floor. A change
that moves the mailer from 0.02 to 0.2 of the ceiling is real however noisy
the machine; a change from 120 to 130 msg/s is not, on its own.

The receiver runs on the same 2 cores as the sender. ``smtp-sink`` needs a
whole core to reach the ceiling, so the ceiling is what 2 cores do with one
of them receiving; the mailer's own runs leave the sink mostly idle (its CPU
share is printed).
"""
