"""Work spread over a Dask cluster: the current client, broadcasts that survive lost workers, block maps.

Functions take ``client=None`` and fall back to the current Dask client when one exists, else run
in-process (``client=False``: in-process whatever is current).
"""

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import CancelledError
from itertools import islice
from typing import TypeVar

from distributed import Future, wait


def current_client(client=None):
    """The given client, else the current ``distributed`` client, else None (run in-process); ``False``
    asks for in-process even when a client is current (small work not worth a round trip)."""
    if client is False:
        return None
    if client is not None:
        return client
    try:
        from distributed import get_client
    except ImportError:
        return None
    try:
        return get_client()
    except ValueError:
        return None


LOST_WORKER_ERRORS: tuple[type[BaseException], ...] = (CancelledError, OSError, KeyError)
ATTEMPTS = 3
T = TypeVar("T")


def retrying(call: Callable[[], T]) -> T:
    """``call()``, called again (at most ``ATTEMPTS`` times in all, backing off) while a lost worker fails it."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return call()
        except LOST_WORKER_ERRORS:
            if attempt == ATTEMPTS:
                raise
            time.sleep(0.5 * attempt)
    raise AssertionError("unreachable")


class Remade:
    """A value on the cluster that ``make`` computes again when a lost worker took it beyond recovery.

    The scheduler recomputes a lost result from its inputs, but scattered inputs have no inputs: once
    their last copy is gone (distributed's memory manager keeps one copy of data no task waits for),
    everything computed from them is cancelled. ``make`` starts again from what the client holds; it
    returns the future and the futures it was computed from, held here so that the scheduler can
    recompute while they last. :func:`scatter` (so :func:`imap_blocks`' retries too) asks for
    :meth:`future` each time.
    """

    def __init__(self, make: Callable[[], tuple[Future, list]]) -> None:
        self.make = make
        self._future: Future | None = None
        self._inputs: list = []

    def release(self) -> None:
        """Let the value go: the cluster frees it once no task needs it; :meth:`future` makes it again."""
        self._future, self._inputs = None, []

    def future(self) -> Future:
        """The current future, made again if the last one was cancelled or released."""
        if self._future is None or self._future.status == "cancelled":
            self._future, self._inputs = self.make()
        return self._future


def future_of(value: Remade | T) -> Future | T:
    """A :class:`Remade`'s current future; any other value as it is (a task argument that may be either)."""
    return value.future() if isinstance(value, Remade) else value


def computed(value: Remade) -> Remade:
    """``value`` once its current future is computed, on the cluster (nothing is brought here)."""
    wait(value.future())
    return value


def _held(*values) -> None:
    """A task that only needs its arguments on its worker (see :func:`scatter`)."""


def scatter(client, shared: tuple) -> list:
    """Send ``shared`` to every worker, retried when a worker is lost meanwhile; futures (results
    already on the cluster) are passed through as they are, and a :class:`Remade` as its current future.

    Not ``Client.scatter(broadcast=True)``: its replication loops for ever when a worker dies while it
    copies (dask/distributed#5704). The values are scattered once, then one :func:`_held` task per
    worker makes it fetch them as any task would, so a dead worker cancels the futures (and this
    retries) instead of hanging, and the tasks that follow are placed on any worker, not only where
    the values first landed.
    """
    shared = tuple(future_of(value) for value in shared)
    at = [i for i, value in enumerate(shared) if not isinstance(value, Future)]
    if not at:
        return list(shared)  # distributed cannot scatter an empty list

    def everywhere() -> list:
        done = client.scatter([shared[i] for i in at], hash=False)
        client.gather([client.submit(_held, *done, workers=[worker], allow_other_workers=True, pure=False)
                       for worker in client.scheduler_info(n_workers=-1)["workers"]])
        return done

    done = retrying(everywhere)
    out = list(shared)
    for i, future in zip(at, done, strict=True):
        out[i] = future
    return out


def imap_blocks(client, task: Callable, blocks: Iterable, shared: tuple, settings: tuple,
                window: int | None = None) -> Iterator:
    """``task(block, *shared, *settings)`` for each block, yielded in block order as results arrive.

    With a client, ``shared`` is scattered once to every worker and blocks are submitted as tasks,
    at most ``window`` at a time (all at once by default): ``blocks`` may be a generator, so a caller
    with big blocks holds only the ones in flight.
    Blocks and settings travel with their tasks, so the scheduler can rerun a task elsewhere when a
    worker dies. A block whose result is lost with its worker is resubmitted (at most ``ATTEMPTS``
    times): blocks are pure functions of their inputs, so a retry changes nothing. A task that fails
    by itself is raised at once. The caller holds one result at a time.
    """
    if client is None:
        yield from (task(block, *shared, *settings) for block in blocks)
        return
    shared_f = scatter(client, shared)
    todo = iter(blocks)
    pending: deque = deque()

    def submit(block) -> None:
        pending.append((block, client.submit(task, block, *shared_f, *settings, pure=False)))

    for block in islice(todo, window):
        submit(block)
    while pending:
        block, future = pending.popleft()
        for attempt in range(1, ATTEMPTS + 1):
            try:
                result = future.result()
                break
            except LOST_WORKER_ERRORS:
                if attempt == ATTEMPTS or future.status == "error":  # the task itself failed: no retry
                    raise
                time.sleep(0.5 * attempt)
                shared_f = scatter(client, shared)
                future = client.submit(task, block, *shared_f, *settings, pure=False)
        del block, future
        for block in islice(todo, 1):
            submit(block)
        yield result


def map_blocks(client, task: Callable, blocks: list, shared: tuple, settings: tuple) -> list:
    """``[task(block, *shared, *settings) for block in blocks]``, as Dask tasks when a client is given
    (see :func:`imap_blocks`)."""
    return list(imap_blocks(client, task, blocks, shared, settings))


Held = Future  # a value left on the cluster, as the client holds it: its future (see where_held)


def _has_future(value) -> bool:
    """Whether ``value`` is a future, or a list or tuple holding one (as task arguments may)."""
    if isinstance(value, list | tuple):
        return any(isinstance(v, Future) for v in value)
    return isinstance(value, Future)


def where_held(client, fn: Callable[..., T], *args) -> T | Future:
    """``fn(*args)`` where its inputs are: when one of ``args`` is a future, a task whose result stays on the
    cluster (the client holds only its future; the scheduler recomputes it from its inputs if a worker is
    lost); else called here."""
    if client is None or not any(_has_future(a) for a in args):
        return fn(*args)
    return client.submit(fn, *args, pure=False)


def brought(client, fn: Callable[..., T], *args) -> T:
    """:func:`where_held`'s result brought here: a small result (a count, per-item figures) of held inputs."""
    return here(where_held(client, fn, *args))


def _value(value: T) -> T:
    """A task returning its argument (see :func:`put`)."""
    return value


def put(client, value: T) -> T | Future:
    """``value`` on the cluster as a task's result (its future; the value itself without a client), for the
    tasks given it to read it there: sent once, not inside each of their graphs, and made again from its task if
    a lost worker took it, which scattered data could not be."""
    if client is None:
        return value
    return client.submit(_value, value, pure=False)


def here(value: T | Future) -> T:
    """A held value brought here (a future's result); any other value as it is."""
    return value.result() if isinstance(value, Future) else value


def brought_each(client, fn: Callable[..., T], values: list) -> list[T]:
    """``[fn(v) for v in values]``, each computed where ``v`` is held, the results brought here in order."""
    if client is None or not _has_future(values):
        return [fn(v) for v in values]
    return client.gather(client.map(fn, values, pure=False))


def n_worker_threads(client) -> int:
    """Total worker threads of a client's cluster (1 when running in-process)."""
    if client is None:
        return 1
    return max(1, sum(client.nthreads().values()))
