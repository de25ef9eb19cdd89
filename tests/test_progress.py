"""Tests for dcxcount.progress: fractions of parts map onto the whole; cancel stops at the next step."""

from __future__ import annotations

import threading

import pytest

from dcxcount.progress import Cancelled, CancelToken, report, sub_progress


def test_a_part_reports_its_share_of_the_whole():
    seen = []
    part = sub_progress(lambda fraction, message: seen.append((fraction, message)), 0.5, 0.75, prefix="m1 s2: ")
    part(0.0, "segment dcx")
    part(0.5, "trace")
    part(2.0, "done")  # clamped
    assert seen == [(0.5, "m1 s2: segment dcx"), (0.625, "m1 s2: trace"), (0.75, "m1 s2: done")]
    assert sub_progress(None, 0, 1) is None


def test_cancel_from_another_thread_stops_at_the_next_step():
    token = CancelToken()
    report(None, token, 0.1, "step 1")
    thread = threading.Thread(target=token.cancel)
    thread.start()
    thread.join()
    assert token.cancelled
    with pytest.raises(Cancelled):
        report(None, token, 0.2, "step 2")
