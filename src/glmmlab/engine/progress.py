"""Progress reporting: the engine calls ``progress(stage, fraction)``; callers decide how to show it."""

from __future__ import annotations

from typing import Callable, Optional

ProgressFn = Optional[Callable[[str, float], None]]


class FitCancelled(Exception):
    """Raised inside a fit when the progress callback asks to stop (it raises this itself)."""


def report(progress: ProgressFn, stage: str, fraction: float) -> None:
    """Call the callback if there is one; fraction is clipped to [0, 1]."""
    if progress is not None:
        progress(stage, min(1.0, max(0.0, float(fraction))))
