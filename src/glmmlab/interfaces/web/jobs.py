"""How a background job of the web app (a fit, an interval computation) ends: one place for its states."""

from __future__ import annotations

import time
import traceback
from typing import Any, Callable

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.progress import FitCancelled
from glmmlab.services.errors import ServiceError


def run_job(job: Any, body: Callable[[], None], noun: str) -> None:
    """Run ``body`` for ``job`` (an object with state, stage, fraction, error, finished_at): "done" when it
    returns, "cancelled" on FitCancelled, "failed" with the message of bad input, or a sentence (and the
    traceback in the log) for anything else."""
    try:
        body()
        job.fraction, job.stage, job.state = 1.0, "Done", "done"
    except FitCancelled:
        job.state, job.stage, job.error = "cancelled", "Cancelled", f"The {noun} was cancelled."
    except (GlmmInputError, ServiceError) as exc:
        job.state, job.error = "failed", str(exc)
    except Exception as exc:  # noqa: BLE001 - the page gets a sentence, the log the traceback
        traceback.print_exc()
        job.state, job.error = "failed", f"The {noun} failed unexpectedly ({exc.__class__.__name__}: {exc})."
    finally:
        job.finished_at = time.time()
