"""Scheduled blasts on APScheduler's calendar, while this process is the active scheduler.

The ``blast`` table is the truth (organizers change it from any terminal);
:meth:`Calendar.mirror` copies its scheduled blasts into APScheduler (job id
``blast-<id>``), whose job store is a table (``apscheduler_jobs``) in the
mailer's own database, so a schedule survives restarts. Only the process
holding the scheduler lock (:mod:`mailer.schedule.leader`) runs APScheduler;
:meth:`Calendar.lead` takes the lock, or keeps standing by.

How a fired job reaches the service, with no module-global state:
APScheduler's persistent job store keeps a job's function as a textual
reference to a module-level function, so the function cannot be a method
bound to the service. The stored function, :func:`run_scheduled`, therefore
does nothing: it is the alarm, not the action. After running it APScheduler
dispatches an execution event to its listeners, and the listener is a method
of the calendar, which knows the service: it hands the blast id to
``on_due``. A job that fires later than ``schedule.misfire_grace`` after its
time (no service was running) is not run; its "missed" event goes to
``on_missed`` the same way. (A custom executor could do the same, but would
have to repeat APScheduler's misfire rules; a listener gets them for free.)

APScheduler runs as a ``BackgroundScheduler``: its own thread reads and
updates the job store, so none of that database work runs on the service's
event loop. The listeners are called on APScheduler's threads, so
``on_due`` and ``on_missed`` must only hand the work on. Every other method
here does database work and is called off the event loop, from the
service's database thread.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from apscheduler.events import EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_PAUSED
from sqlalchemy.exc import DBAPIError
from sqlmodel import col, select

from mailer.config import Settings
from mailer.schedule import planner
from mailer.schedule.leader import scheduler_lock
from mailer.schedule.times import show
from mailer.store import Blast, BlastStatus, Database

log = logging.getLogger("mailer.service")

JOBS_TABLE = "apscheduler_jobs"
_PREFIX = "blast-"


def job_id(blast_id: int) -> str:
    return f"{_PREFIX}{blast_id}"


def run_scheduled(blast_id: int) -> int:
    """The stored job of a scheduled blast: the alarm only (see the module's docstring).

    Stored by this module path; the calendar's listener starts the blast.
    """
    return blast_id


class Calendar:
    """APScheduler, its job store and the scheduler lock, for one service.

    ``on_due(blast_id)`` and ``on_missed(blast_id, due_at)`` are called on
    APScheduler's threads when a blast's job fires or misfires.
    """

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        on_due: Callable[[int], None],
        on_missed: Callable[[int, datetime], None],
        clock: Callable[[], datetime],
    ) -> None:
        self.db = db
        self.settings = settings
        self.on_due = on_due
        self.on_missed = on_missed
        self.clock = clock
        self.grace = settings.schedule.misfire_grace
        # APScheduler counts the grace in whole seconds, at least one.
        self.grace_seconds = max(1, int(self.grace))
        self.known: dict[int, datetime] = {}  # blast id -> time its job is set for
        self.scheduler: BackgroundScheduler | None = None  # set while the active scheduler
        self.lock = scheduler_lock(db.engine)
        self._said_standby = False

    # -- one active scheduler -------------------------------------------------------------

    def lead(self) -> bool:
        """Be the active scheduler if the lock allows; False while standing by."""
        if self.scheduler is not None:
            if self.lock.held():
                return True
            log.error(
                "lost the scheduler lock (database connection gone); standing by",
                extra={"event": "scheduler.lost"},
            )
            self.step_down()
            return False
        try:
            acquired = self.lock.acquire()
        except (DBAPIError, OSError) as exc:  # the database is unreachable: next poll again
            log.error("cannot take the scheduler lock: %s", exc, extra={"event": "service.error"})
            return False
        if not acquired:
            if not self._said_standby:
                self._said_standby = True
                log.info(
                    "another scheduler is active; standing by",
                    extra={"event": "scheduler.standby"},
                )
            return False
        self.scheduler = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.db.engine, tablename=JOBS_TABLE)},
            job_defaults={"misfire_grace_time": self.grace_seconds, "coalesce": True},
            timezone=UTC,
        )
        self.scheduler.add_listener(self._fired, EVENT_JOB_EXECUTED | EVENT_JOB_MISSED)
        # Paused until the first mirror: a job stored by an earlier service must get
        # this service's grace before APScheduler's thread may run (or miss) it.
        self.scheduler.start(paused=True)
        log.info("this is the active scheduler", extra={"event": "scheduler.active"})
        return True

    def step_down(self) -> None:
        """Stop APScheduler (its jobs stay stored) and forget what was mirrored."""
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        self.known.clear()
        self._said_standby = False

    def close(self) -> None:
        self.step_down()
        self.lock.release()

    # -- schedules -----------------------------------------------------------------------

    def mirror(self) -> None:
        """Place waiting follow-ups, then make APScheduler's jobs match the scheduled blasts."""
        assert self.scheduler is not None
        with self.db.session() as session:
            for follow_up in planner.place_follow_ups(session, now=self.clock()):
                log.info(
                    "follow-up %d placed at %s",
                    follow_up.id,
                    follow_up.scheduled_at,
                    extra={"event": "blast.follow_up_placed", "blast": follow_up.id},
                )
            wanted = {
                blast_id: at
                for blast_id, at in session.exec(
                    select(Blast.id, Blast.scheduled_at).where(
                        Blast.status == BlastStatus.SCHEDULED, col(Blast.scheduled_at).is_not(None)
                    )
                ).all()
                if blast_id is not None and at is not None
            }
        for blast_id, at in wanted.items():
            if self.known.get(blast_id) == at:
                continue
            job = self.scheduler.get_job(job_id(blast_id))
            # A stored job keeps the grace of the service that set it; set it again
            # so that the grace in the settings of this service decides.
            if (
                job is None
                or job.next_run_time != at
                or job.misfire_grace_time != self.grace_seconds
            ):
                self.scheduler.add_job(
                    run_scheduled,
                    "date",
                    run_date=at,
                    args=[blast_id],
                    id=job_id(blast_id),
                    replace_existing=True,
                )
                log.info(
                    "blast %d scheduled for %s",
                    blast_id,
                    show(at, self.settings.schedule.timezone),
                    extra={"event": "blast.job_set", "blast": blast_id, "at": at.isoformat()},
                )
            self.known[blast_id] = at
        for blast_id in list(self.known):
            if blast_id not in wanted:
                with contextlib.suppress(Exception):
                    self.scheduler.remove_job(job_id(blast_id))
                del self.known[blast_id]
        if self.scheduler.state == STATE_PAUSED:
            self.scheduler.resume()

    def forget(self, blast_id: int) -> None:
        """Its job has fired: the next mirror sets it again if the blast is still scheduled."""
        self.known.pop(blast_id, None)

    def mark_missed(self, blast_id: int, due_at: datetime) -> None:
        """Record that ``blast_id``'s time passed beyond the grace while no service ran."""
        when = show(due_at, self.settings.schedule.timezone)
        reason = (
            f"missed: due at {when} while no service was running, "
            f"more than {self.grace:.0f} s ago (schedule.misfire_grace); not sent"
        )
        with self.db.session() as session:
            if planner.mark_missed(session, blast_id, reason, now=self.clock()):
                log.warning(reason, extra={"event": "blast.missed", "blast": blast_id})
        self.forget(blast_id)

    # -- on APScheduler's threads ----------------------------------------------------------

    def _fired(self, event: JobExecutionEvent) -> None:
        name = str(event.job_id)
        if not name.startswith(_PREFIX):
            return
        blast_id = int(name.removeprefix(_PREFIX))
        if event.code == EVENT_JOB_MISSED:
            self.on_missed(blast_id, event.scheduled_run_time)
        else:
            self.on_due(blast_id)
