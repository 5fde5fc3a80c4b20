"""The one way a dock widget runs long work: in a napari worker thread, with a progress bar and Cancel.

A widget mixes in :class:`RunsInBackground` and calls :meth:`~RunsInBackground.run_job` with a
function ``work(progress, should_stop)`` from the core (see :mod:`napari_brainseg.jobs`): it runs in a
napari worker thread, reports :class:`~napari_brainseg.jobs.Progress` through ``progress`` and asks
``should_stop()`` between steps. The widget shows it running (Run disabled, Cancel enabled, a progress
bar) until it ends.

* *Cancel* asks the job to stop at its next step (a batch of windows, a training step, a case): nothing
  new starts after that, and its result, if it still comes, is dropped. The widget is ready again once
  the job has ended, so two jobs of one widget never run side by side.
* When the widget is deleted (its dock closed, or the viewer closed) or the application quits, the job
  is cancelled the same way and detached: none of its signals reaches the widget's Qt objects again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QObject, Signal

from ..jobs import CancelToken, Cancelled, Progress, ProgressCallback

if TYPE_CHECKING:
    from magicgui.widgets import ProgressBar, PushButton
    from napari.qt.threading import FunctionWorker

    from . import Status

Work = Callable[[ProgressCallback, CancelToken], Any]
_CANCELLED = object()
"""What the worker returns when its job raised :class:`Cancelled` (napari would report it as an error)."""


class _ProgressSignal(QObject):
    """Carries a job's progress from its worker thread to the widget (a queued Qt connection)."""

    progressed = Signal(object)


class Job:
    """A job running in a napari worker: its cancel token, and the handlers that may be detached."""

    def __init__(self, work: Work) -> None:
        from napari.qt.threading import create_worker

        self.token = CancelToken()
        self._signal = _ProgressSignal()
        self.worker: FunctionWorker = create_worker(self._run, work, _start_thread=False)
        self._connections: list[tuple[Any, Callable]] = []
        self.detached = False

    def _run(self, work: Work) -> Any:
        try:
            return work(self._signal.progressed.emit, self.token)
        except Cancelled:
            return _CANCELLED

    def connect(self, signal, handler: Callable) -> None:
        """Connect ``handler`` to ``signal`` until :meth:`detach` (a call already queued is dropped too)."""

        def unless_detached(*args) -> None:
            if not self.detached:
                handler(*args)

        signal.connect(unless_detached)
        self._connections.append((signal, unless_detached))

    @property
    def progressed(self):
        return self._signal.progressed

    @property
    def cancelled(self) -> bool:
        return self.token()

    def detach(self) -> None:
        """Cancel the job and disconnect every handler: it runs on to its next step and then ends unseen."""
        self.token.cancel()
        self.detached = True
        for signal, handler in self._connections:
            try:
                signal.disconnect(handler)
            except (TypeError, RuntimeError):  # already gone with its Qt object
                pass
        self._connections = []


class RunsInBackground:
    """Mixed into a widget that runs one job at a time, shown by its Run/Cancel buttons and progress bar."""

    FAILED = "It failed"
    """How the status line starts when the job raises, e.g. ``"Segmentation failed"``."""
    CANCELLED = "Cancelled."
    """The status line once a cancelled job has ended."""
    job: Job | None = None
    run_button: PushButton
    cancel_button: PushButton
    progress: ProgressBar
    status: Status
    native: Any

    @property
    def worker(self) -> FunctionWorker | None:
        """The napari worker of the running job (``None`` when idle)."""
        return None if self.job is None else self.job.worker

    def run_job(self, work: Work, on_result: Callable[[Any], None], busy: str) -> Job:
        """Run ``work(progress, should_stop)`` in a worker thread; ``on_result`` gets what it returns.

        ``busy`` is the status line meanwhile; :meth:`on_progress` sees each step.
        """
        job = Job(work)
        job.connect(job.progressed, self.on_progress)
        job.connect(job.worker.returned, lambda result: self._on_returned(job, result, on_result))
        job.connect(job.worker.errored, self._on_error)
        job.connect(job.worker.finished, self._on_finished)
        job.connect(self.native.destroyed, lambda *_: job.detach())
        app = _application()
        if app is not None:
            job.connect(app.aboutToQuit, job.detach)
        self.job = job
        self.run_button.enabled, self.cancel_button.enabled = False, True
        self.progress.value, self.progress.max, self.progress.visible = 0, 1, True
        self.status.info(busy)
        job.worker.start()
        return job

    def cancel(self) -> None:
        """Ask the running job to stop at its next step; nothing it would still do is shown."""
        if self.job is not None and not self.job.cancelled:
            self.job.token.cancel()
            self.cancel_button.enabled = False
            self.status.info("Cancelling\u2026")

    def on_progress(self, progress: Progress) -> None:
        """Show a step of the job (the progress bar; a widget may show more)."""
        self.progress.max, self.progress.value = max(progress.total, 1), progress.done

    def on_cancelled(self) -> None:
        """Say that the job was cancelled (a widget may say what was kept)."""
        self.status.info(self.CANCELLED)

    def _on_returned(self, job: Job, result: Any, on_result: Callable[[Any], None]) -> None:
        if result is _CANCELLED or job.cancelled:
            self.on_cancelled()
        else:
            on_result(result)

    def _on_error(self, err: Exception) -> None:
        # napari's worker has already raised a notification for it (with the traceback).
        self.status.error(f"{self.FAILED}: {err}", notify=False)

    def _on_finished(self) -> None:
        if self.job is not None:
            self.job.detach()
        self.job = None
        self.run_button.enabled, self.cancel_button.enabled = True, False
        self.progress.visible = False


def _application():
    from qtpy.QtWidgets import QApplication

    return QApplication.instance()
