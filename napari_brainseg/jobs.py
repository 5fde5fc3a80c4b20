"""Long work: how it reports progress, how it is asked to stop, and how it is run to its end.

A long job whose loop is ours (training steps, fine-tuning, scoring cases) is a generator: it yields a
:class:`Progress` after each unit of work and returns its result. :func:`drive` runs it to the end,
passing each step to a ``progress`` callback and asking ``should_stop()`` between steps; when that
turns true the generator is closed (its ``finally`` blocks run, so a training run keeps its last
completed epoch) and :class:`Cancelled` is raised.

MONAI's sliding window owns its loop and calls us back once per batch of windows; :func:`counted`
is the bridge for such loops: it wraps the function the loop calls, so that each call counts as work
done, is reported as the same :class:`Progress`, and raises :class:`Cancelled` instead of running
once the caller asked to stop.

Cancellation is cooperative: a job stops at its next step (a training step, a batch of windows, a
case), never in the middle of one, and a job asked to stop before it starts does nothing.
A :class:`CancelToken` is the usual ``should_stop``. Nothing here knows about Qt; the plugin's
widgets run these jobs in napari's worker threads (``napari_brainseg._widgets._worker``).

Example:
    >>> def count_to(n):
    ...     for i in range(1, n + 1):
    ...         yield Progress("count", i, n)
    ...     return "done"
    >>> seen = []
    >>> drive(count_to(3), seen.append)
    'done'
    >>> [p.done for p in seen]
    [1, 2, 3]
    >>> token = CancelToken()
    >>> drive(count_to(3), lambda p: token.cancel() if p.done == 2 else None, token)
    Traceback (most recent call last):
    ...
    napari_brainseg.jobs.Cancelled: Stopped on request (count, step 2 of 3).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from typing import NamedTuple, TypeVar

T = TypeVar("T")
A = TypeVar("A")
R = TypeVar("R")


class Cancelled(Exception):
    """Raised inside a job when its caller asked it to stop; what it had finished is kept."""


class Progress(NamedTuple):
    """One step of a long job: its stage ("train", "segment", ...), steps done and total, last loss, a note."""

    stage: str
    done: int
    total: int
    loss: float | None = None
    note: str = ""


ProgressCallback = Callable[[Progress], None]
ShouldStop = Callable[[], bool]


class CancelToken:
    """A request to stop, set once from any thread; call it (``should_stop``) to ask whether it was set."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    def __call__(self) -> bool:
        return self._event.is_set()


def drive(job: Generator[Progress, None, T], progress: ProgressCallback | None = None,
          should_stop: ShouldStop | None = None) -> T:
    """Run a job that yields :class:`Progress` to its end and return its result.

    ``progress`` sees every step; when ``should_stop()`` turns true (checked after each step) the job is
    closed and :class:`Cancelled` raised.
    """
    while True:
        try:
            done = next(job)
        except StopIteration as end:
            return end.value
        if progress is not None:
            progress(done)
        if should_stop is not None and should_stop():
            job.close()
            raise Cancelled(f"Stopped on request ({done.stage}, step {done.done} of {done.total}).")


def counted(unit: Callable[[A], R], stage: str, total: int, progress: ProgressCallback | None = None,
            should_stop: ShouldStop | None = None, size: Callable[[A], int] = lambda _: 1) -> Callable[[A], R]:
    """The bridge for a loop that calls us back (MONAI's sliding window calls ``unit`` per batch of windows).

    The wrapped ``unit`` raises :class:`Cancelled` instead of running once ``should_stop()`` is true, so
    no unit starts after a request to stop; after each unit it reports :class:`Progress`, counting
    ``size(argument)`` units done.
    """
    done = 0

    def run(argument: A) -> R:
        nonlocal done
        if should_stop is not None and should_stop():
            raise Cancelled(f"Stopped on request ({stage}, step {done} of {total}).")
        result = unit(argument)
        done += size(argument)
        if progress is not None:
            progress(Progress(stage, done, total))
        return result

    return run
