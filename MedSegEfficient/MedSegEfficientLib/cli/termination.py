"""SIGTERM (a service manager, ``kill``, a cluster's scheduler) and SIGHUP end a long command the way Ctrl-C does:
``medseg serve`` removes its folder of uploaded images, ``medseg batch`` stops its workers before they write
outputs that no manifest records. Their default action would end the process with no clean-up at all."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def stop_on_termination() -> Iterator[dict[str, str]]:
    """Within it, SIGTERM and SIGHUP raise KeyboardInterrupt in the main thread (the handlers before are put back
    after); the dict yielded gets the name of the signal that did it under "signal"."""
    stopped_by: dict[str, str] = {}

    def stop(number: int, _frame) -> None:
        stopped_by["signal"] = signal.Signals(number).name
        raise KeyboardInterrupt

    before = {}
    if threading.current_thread() is threading.main_thread():  # only the main thread may set handlers
        for name in ("SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                before[name] = signal.signal(getattr(signal, name), stop)
    try:
        yield stopped_by
    finally:
        for name, handler in before.items():
            signal.signal(getattr(signal, name), handler)


__all__ = ["stop_on_termination"]
