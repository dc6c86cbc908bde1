"""Background jobs: one runner and one job object for every long task (an import, a fit).

A job runs ``work(job)`` in a daemon thread (a long task never holds up a server's shutdown). It reports through
one vocabulary: ``state`` (queued, running, done, failed, cancelled), ``stage`` (a few words for the person
waiting, e.g. "Importing" or "Optimizing") and ``fraction`` (0 to 1, never going back). ``job.report`` is a
progress callback in the engine's shape ``(stage, fraction)``; it also takes the other shapes the services use
((fraction), (done, total), keywords). When someone asked the job to stop (:meth:`JobRunner.cancel`), the next
report raises :class:`~glmmlab.engine.progress.FitCancelled` and the job ends ``cancelled``.

Kinds can be limited to a number of jobs at once (``limits={"fit": 4}``): the others wait, ``queued``.
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.progress import FitCancelled
from glmmlab.services.errors import NotFound, ServiceError

STATES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")


@dataclass
class Job:
    """One background task. ``info`` holds what a kind adds to its JSON (a fit's dataset and spec), ``kept`` what
    it keeps out of it (a fit's project and the file of its per-row diagnostics); ``on_forget`` runs when the runner
    drops the finished job (to remove files it kept)."""

    id: str
    kind: str
    label: str
    state: str = "queued"
    stage: str = "Waiting to start"
    fraction: float = 0.0
    error: str | None = None
    result: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    kept: dict[str, Any] = field(default_factory=dict)  # what the work keeps for later, not in the JSON
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    on_forget: Callable[[], None] | None = None
    forgotten: bool = False  # dropped from the runner (removed by the person, or old); a running job ends first
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def check_cancelled(self) -> None:
        if self.cancel_requested.is_set():
            raise FitCancelled()

    def report(self, *args: Any, **kwargs: Any) -> None:
        """Progress: ``(stage, fraction)``, ``(fraction)``, ``(done, total)`` or ``stage=``/``fraction=``/
        ``done=``/``total=`` keywords. Raises FitCancelled once a stop was asked for."""
        self.check_cancelled()
        numbers = [a for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)]
        words = [a for a in args if isinstance(a, str)]
        fraction = kwargs.get("fraction")
        if fraction is None and "done" in kwargs and kwargs.get("total"):
            fraction = kwargs["done"] / kwargs["total"]
        if fraction is None and len(numbers) >= 2 and numbers[1]:
            fraction = numbers[0] / numbers[1]
        elif fraction is None and len(numbers) == 1:
            fraction = numbers[0]
        if fraction is not None:
            self.fraction = max(self.fraction, max(0.0, min(1.0, float(fraction))))
        stage = kwargs.get("stage") or (words[0] if words else None)
        if stage:
            self.stage = stage[:1].upper() + stage[1:]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "label": self.label, "state": self.state, "stage": self.stage,
                "fraction": round(self.fraction, 4), "error": self.error, "result": self.result,
                "elapsed_seconds": round((self.finished_at or time.time()) - self.started_at, 3), **self.info}


class JobRunner:
    """The jobs of one process (one web app): start, look up, cancel. Of each kind, the finished jobs beyond
    ``keep[kind]`` (default 200) are dropped, oldest first."""

    def __init__(self, limits: dict[str, int] | None = None, keep: dict[str, int] | None = None):
        self._slots = {kind: threading.BoundedSemaphore(n) for kind, n in (limits or {}).items()}
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self.keep = dict(keep or {})

    def start(self, kind: str, label: str, work: Callable[[Job], dict[str, Any] | None], *,
              cleanup: Callable[[], None] | None = None, info: dict[str, Any] | None = None,
              before_start: Callable[[Job], None] | None = None) -> Job:
        """Run ``work(job)`` in a thread; what it returns is the job's ``result``. ``cleanup`` runs after it in
        any case; ``before_start`` runs on the new job before the thread starts (to attach what ``work`` needs)."""
        job = Job(id=uuid.uuid4().hex[:16], kind=kind, label=label, info=dict(info or {}))
        if before_start is not None:
            before_start(job)
        with self._lock:
            self._jobs[job.id] = job
            self._forget_old(kind)
        slots = self._slots.get(kind)

        def run() -> None:
            try:
                with slots if slots is not None else contextlib.nullcontext():
                    job.check_cancelled()
                    job.state = "running"
                    job.result = work(job)
                job.fraction, job.stage, job.state = 1.0, "Done", "done"
            except FitCancelled:
                job.stage, job.error, job.state = "Cancelled", f"The {_noun(kind)} was cancelled.", "cancelled"
            except (ServiceError, GlmmInputError) as exc:
                job.stage, job.error, job.state = "Failed", str(exc), "failed"
            except Exception as exc:  # noqa: BLE001 - the page gets a sentence, the log the traceback
                traceback.print_exc()
                job.stage, job.state = "Failed", "failed"
                job.error = f"The {_noun(kind)} failed unexpectedly ({exc.__class__.__name__}: {exc})."
            finally:
                job.finished_at = time.time()
                if cleanup is not None:
                    with contextlib.suppress(Exception):
                        cleanup()
                if job.forgotten:  # removed while it ran: what it kept goes now
                    self._drop(job)

        threading.Thread(target=run, name=f"glmmlab-{kind}-{job.id}", daemon=True).start()
        return job

    def get(self, job_id: str, kind: str | None = None) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or (kind is not None and job.kind != kind):
            raise NotFound(f"There is no {_noun(kind or 'job')} '{job_id}'; jobs are kept in memory until the "
                           "server stops.")
        return job

    def jobs(self, kind: str | None = None) -> list[Job]:
        """The jobs (of ``kind``), newest first."""
        with self._lock:
            found = [j for j in self._jobs.values() if kind is None or j.kind == kind]
        return sorted(found, key=lambda j: -j.started_at)

    def running(self, kind: str | None = None) -> list[Job]:
        return [j for j in self.jobs(kind) if not j.finished]

    def cancel(self, job_id: str, kind: str | None = None) -> Job:
        """Ask a job to stop; it stops at its next progress report (a queued job before it starts)."""
        job = self.get(job_id, kind)
        if not job.finished:
            job.cancel_requested.set()
            job.stage = "Cancelling"
        return job

    def cancel_all(self) -> list[Job]:
        """Ask every job not finished to stop (a server shutting down); returns them."""
        with self._lock:
            jobs = [j for j in self._jobs.values() if not j.finished]
        for job in jobs:
            job.cancel_requested.set()
            job.stage = "Cancelling"
        return jobs

    def forget(self, job_id: str, kind: str | None = None) -> Job:
        """Drop a job (a run removed from the page's list): a running one is asked to stop and dropped when it has;
        what a finished one kept (its files) goes at once."""
        job = self.get(job_id, kind)
        job.forgotten = True
        with self._lock:
            self._jobs.pop(job.id, None)
        if job.finished:
            self._drop(job)
        else:
            job.cancel_requested.set()
            job.stage = "Cancelling"
        return job

    def _drop(self, job: Job) -> None:
        with self._lock:
            self._jobs.pop(job.id, None)
        if job.on_forget is not None:
            with contextlib.suppress(Exception):
                job.on_forget()
            job.on_forget = None

    def add(self, job: Job) -> None:
        """Keep a job made elsewhere (finished or not) as if it had been started here."""
        with self._lock:
            self._jobs[job.id] = job
            self._forget_old(job.kind)

    def _forget_old(self, kind: str) -> None:
        finished = sorted((j for j in self._jobs.values() if j.kind == kind and j.finished_at is not None),
                          key=lambda j: j.finished_at or 0.0)
        for old in finished[: max(0, len(finished) - self.keep.get(kind, 200))]:
            old.forgotten = True
            self._jobs.pop(old.id, None)
            if old.on_forget is not None:
                with contextlib.suppress(Exception):
                    old.on_forget()
                old.on_forget = None


def _noun(kind: str) -> str:
    return {"interval": "interval computation"}.get(kind, kind)
