"""At most N Prefect task runs in flight, the next submitted as one finishes, and none after a failure.

Why this is hand-built and not ``task.map`` with ``prefect.futures.wait`` / ``as_completed``
(Prefect 3.8):

- ``task.map`` submits every task run at once. On the thread task runner the flow's pool
  (``runner.MAX_THREADS``) then bounds them, not the run's ``concurrency``; on Dask the cluster's
  threads do. Submitting as earlier tasks finish keeps the bound on any task runner.
- ``wait`` returns when *all* futures are done and ``as_completed`` walks a fixed set: neither lets
  a finished task make room for the next one, and calling ``as_completed`` afresh per completion
  registers another callback on every pending future each time.
- After a patch fails for good, no further task may start. Tasks never submitted cannot start;
  those submitted but queued are cancelled (``cancel``).

So the futures' own done callbacks feed a queue that the flow's thread reads: the bookkeeping
(results, progress, failures) stays on that thread, in the order they finish.
"""

from __future__ import annotations

import itertools
import queue
from collections.abc import Callable, Iterator
from typing import Any


class InFlight:
    """``submit(i)`` for i in ``range(count)``, at most ``bound`` futures not yet taken from the iterator.

    Iterating yields ``(i, future)`` as futures finish; the caller calls ``more()`` to fill the slot a
    finished future left (before its own bookkeeping, so a slot never waits for it), or ``cancel()``
    and stops.

    Parameters
    ----------
    submit : Callable[[int], Any]
        Submits task ``i`` and returns its Prefect future.
    count : int
        How many tasks there are.
    bound : int
        The most futures in flight (at least 1).
    """

    def __init__(self, submit: Callable[[int], Any], count: int, bound: int):
        self._submit = submit
        self._waiting = iter(range(count))
        self._running: dict[int, Any] = {}
        self._finished: queue.SimpleQueue = queue.SimpleQueue()
        for i in itertools.islice(self._waiting, max(1, bound)):
            self._start(i)

    def _start(self, i: int) -> None:
        future = self._running[i] = self._submit(i)
        future.add_done_callback(lambda done, i=i: self._finished.put((i, done)))

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        while self._running:
            i, future = self._finished.get()
            del self._running[i]
            yield i, future

    def more(self) -> None:
        """Submit the next waiting task, if any is left."""
        following = next(self._waiting, None)
        if following is not None:
            self._start(following)

    def cancel(self) -> None:
        """Cancel the task runs still in flight: queued ones never start (threads), and on Dask running ones
        are dropped too; a thread already reading its patch finishes, and its fork is discarded. Tasks
        never submitted never will be."""
        self._waiting = iter(())
        for future in self._running.values():
            wrapped = getattr(future, "wrapped_future", None)
            if wrapped is not None and not wrapped.done():
                wrapped.cancel()
