"""Long work: a job reports Progress, stops between steps when asked, and keeps what it finished."""

from __future__ import annotations

import pytest

from napari_brainseg import inference
from napari_brainseg.jobs import CancelToken, Cancelled, Progress, counted, drive


def counting_job(n: int, log: list[str]):
    try:
        for i in range(1, n + 1):
            log.append(f"step {i}")
            yield Progress("count", i, n)
        return n
    finally:
        log.append("closed")


def test_drive_runs_a_job_to_its_end_and_returns_its_result():
    log: list[str] = []
    seen: list[Progress] = []
    assert drive(counting_job(3, log), seen.append) == 3
    assert [(p.stage, p.done, p.total) for p in seen] == [("count", 1, 3), ("count", 2, 3), ("count", 3, 3)]


def test_a_job_asked_to_stop_ends_after_its_current_step_and_runs_its_clean_up():
    log: list[str] = []
    token = CancelToken()
    with pytest.raises(Cancelled, match="count, step 2 of 5"):
        drive(counting_job(5, log), lambda p: token.cancel() if p.done == 2 else None, token)
    assert log == ["step 1", "step 2", "closed"]


def test_the_callback_bridge_counts_units_and_starts_none_after_a_request_to_stop():
    ran: list[int] = []
    seen: list[Progress] = []
    token = CancelToken()
    unit = counted(ran.append, "segment", 6, seen.append, token, size=lambda batch: 2)
    unit(1)
    unit(2)
    token.cancel()
    with pytest.raises(Cancelled):
        unit(3)
    assert ran == [1, 2]
    assert [(p.done, p.total) for p in seen] == [(2, 6), (4, 6)]


def test_a_cancel_token_is_the_should_stop_callable_of_a_job():
    token = CancelToken()
    assert token() is False
    token.cancel()
    token.cancel()
    assert token() is True


def test_cancelled_is_still_importable_from_inference():
    assert inference.Cancelled is Cancelled
