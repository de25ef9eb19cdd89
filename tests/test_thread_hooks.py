"""Tests for dcxcount.thread_hooks: one install for all threads, each thread its own value."""

from __future__ import annotations

import logging
import threading

from dcxcount.thread_hooks import ThreadScopedHook


def test_each_thread_sees_its_own_value_and_the_last_one_out_removes_the_hook():
    events = []
    hook: ThreadScopedHook[str] = ThreadScopedHook(lambda: events.append("install") or (lambda: events.append("remove")))
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first() -> None:
        with hook("a"):
            first_in.set()
            second_in.wait(10)
            seen["first"] = hook.current()
        first_out.set()  # leaves first, while the second thread is still inside

    def second() -> None:
        first_in.wait(10)
        with hook("b"):
            second_in.set()
            first_out.wait(10)
            seen["second"] = hook.current()
            seen["installed while the second is inside"] = list(events)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen == {"first": "a", "second": "b", "installed while the second is inside": ["install"]}
    assert events == ["install", "remove"] and hook.current() is None


def test_a_nested_use_in_one_thread_gives_the_outer_value_back():
    hook: ThreadScopedHook[str] = ThreadScopedHook(lambda: lambda: None)
    with hook("outer"):
        with hook("inner"):
            assert hook.current() == "inner"
        assert hook.current() == "outer"
    assert hook.current() is None


def test_tifffile_lines_of_two_reads_at_once_stay_apart():
    """An error tifffile logs while one thread reads a file must not mark another thread's file damaged."""
    from dcxcount.io import _tifffile_log

    logger = logging.getLogger("tifffile")
    a_in, b_done = threading.Event(), threading.Event()
    found = {}

    def read(name: str, *, logs_error: bool) -> None:
        notes: list[str] = []
        with _tifffile_log(notes) as errors:
            if logs_error:
                a_in.wait(10)
                logger.error("cannot read page 3 of %s", name)
                b_done.set()
            else:
                a_in.set()
                b_done.wait(10)
        found[name] = (notes, errors)

    threads = [threading.Thread(target=read, args=("a.tif",), kwargs={"logs_error": False}),
               threading.Thread(target=read, args=("b.tif",), kwargs={"logs_error": True})]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert found["a.tif"] == ([], [])
    assert found["b.tif"] == (["tifffile: cannot read page 3 of b.tif"], ["cannot read page 3 of b.tif"])
    assert logger.propagate and not logger.handlers  # as it was before any read


def test_work_handed_to_a_pool_keeps_the_callers_value():
    """A mosaic's tiles run in a pool's threads; what they warn must reach the section that asked for them."""
    from concurrent.futures import ThreadPoolExecutor

    from dcxcount.thread_hooks import carried

    hook: ThreadScopedHook[str] = ThreadScopedHook(lambda: lambda: None)
    with ThreadPoolExecutor(2) as pool:
        assert pool.submit(carried(hook.current)).result() is None  # nothing to carry
        with hook("section 1"):
            assert pool.submit(hook.current).result() is None  # a pool's thread has no value of its own
            current = carried(hook.current)  # in the caller's thread, as the mosaic's tile loop does
            assert [pool.submit(current).result() for _ in range(2)] == ["section 1"] * 2
