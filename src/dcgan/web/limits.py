"""How much work the server takes on: a few worker threads, a bounded wait queue and a time limit per request.

Every request that runs the generator goes through a `Lane`: at most `workers` of them run at once on the lane's
own threads, at most `queue` more wait, and one more is refused at once with `Overloaded` (the server answers
503 with a Retry-After header) instead of waiting without end. Projections have a lane of their own, so a long
projection never keeps sample sheets waiting, and nothing the lanes do runs on the event loop, so `/api/info`
and the page itself are answered while every worker is busy.

Each request has a deadline (its lane's time limit from when it was accepted, waiting included). Work checks it
cooperatively through this module: `holding(lock)` waits for a lock no longer than the deadline (then
`Overloaded`: the server was too busy), and `check_time()`, which the projection calls before every step of its
optimisation, raises `TimeLimitExceeded` (504) once the deadline has passed or the client has gone. Either way
the worker stops and takes the next request; none is left running for a client that gave up.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dcgan.errors import ConfigError

T = TypeVar("T")

#: How long past a request's limit the server waits for work that has not stopped itself before answering 504
#: anyway (the worker stays counted as busy until that work really ends, so the bounds still hold).
GRACE_S = 5.0
MAX_WORKERS = 64
MAX_QUEUE = 4096
MAX_TIMEOUT_S = 3600.0


def default_workers() -> int:
    """One worker per CPU core, at least 2 (one can encode PNGs while another runs G) and at most 8."""
    return max(2, min(8, os.cpu_count() or 1))


def count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


@dataclass(frozen=True)
class ServerLimits:
    """How much work `dcgan serve` takes on at once (`--workers`, `--queue`, `--timeout`, `--project-queue`,
    `--project-timeout`); out-of-range values raise `ConfigError` with one sentence.

    Attributes:
        workers: requests that run G (sheets, arithmetic, walks, directions, filters) at once.
        queue: such requests that may wait for a worker; one more is answered 503 at once.
        timeout_s: time limit of such a request, waiting included.
        project_queue: projections that may wait while one runs (projections run one at a time).
        project_timeout_s: time limit of a projection, waiting included; its optimisation stops there.
    """

    workers: int = field(default_factory=default_workers)
    queue: int = 32
    timeout_s: float = 30.0
    project_queue: int = 2
    project_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        counts = (("The number of workers", self.workers, 1, MAX_WORKERS), ("The queue", self.queue, 0, MAX_QUEUE),
                  ("The projection queue", self.project_queue, 0, MAX_QUEUE))  # fmt: skip
        for name, value, low, high in counts:
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"{name} must be a whole number from {low} to {high}, got {value!r}.")
        for name, seconds in (
            ("The time limit", self.timeout_s),
            ("The projection time limit", self.project_timeout_s),
        ):
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds <= MAX_TIMEOUT_S:
                raise ConfigError(f"{name} must be a number of seconds above 0 and at most 3600, got {seconds!r}.")


class Overloaded(Exception):
    """Too busy for one more request: the queue is full, or it waited until its deadline before it could start."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class TimeLimitExceeded(Exception):
    """The work ran past its request's time limit (or its client went away) and was stopped."""


@dataclass
class Job:
    """One accepted request: its lane, its deadline (time.monotonic()) and whether its answer is still wanted."""

    lane: Lane
    deadline: float
    abandoned: threading.Event = field(default_factory=threading.Event)


_current = threading.local()


def current_job() -> Job | None:
    """The request this thread is working on, or None outside a server's lane (the Python API: no limits)."""
    return getattr(_current, "job", None)


def check_time() -> None:
    """Raise `TimeLimitExceeded` if this thread's request is past its deadline or no longer wanted."""
    job = current_job()
    if job is not None and (job.abandoned.is_set() or time.monotonic() > job.deadline):
        raise TimeLimitExceeded(job.lane.too_slow_message())


@contextmanager
def holding(lock: threading.Lock) -> Iterator[None]:
    """Hold `lock`, waiting for it no longer than this thread's request may wait (without end outside a lane)."""
    job = current_job()
    wait = -1.0 if job is None else max(job.deadline - time.monotonic(), 0.0)
    if not lock.acquire(timeout=wait):
        assert job is not None
        raise job.lane.overloaded()
    try:
        yield
    finally:
        lock.release()


class Lane:
    """`workers` threads and room for `queue` waiting requests; `await lane.run(fn, ...)` runs fn on one of them.

    `run` is called on the event loop; it never blocks it. Counts are kept under a lock because the worker
    threads update them too.
    """

    def __init__(self, name: str, what: str, workers: int, queue: int, timeout_s: float) -> None:
        self.name, self.what = name, what  # what: "request" or "projection", for messages
        self.workers, self.queue, self.timeout_s = workers, queue, timeout_s
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix=f"dcgan-{name}")
        self._counts = threading.Lock()
        self.accepted = 0  # waiting or running
        self.running = 0
        self._service_s = 1.0  # moving average of how long a request takes once started: for Retry-After

    @property
    def waiting(self) -> int:
        return self.accepted - self.running

    @property
    def full(self) -> bool:
        """Whether one more request would be refused now (a glance: `run` decides under the lock)."""
        return self.accepted >= self.workers + self.queue

    def state(self) -> dict[str, int]:
        with self._counts:
            return {"workers": self.workers, "queue": self.queue, "running": self.running, "waiting": self.waiting}

    def retry_after_s(self) -> int:
        """Seconds until a worker is likely free for one more request: the queue ahead of it over the workers."""
        ahead = (self.accepted + 1) / self.workers
        return max(1, min(60, math.ceil(self._service_s * ahead)))

    def overloaded(self) -> Overloaded:
        return Overloaded(
            f"The server is busy ({count(self.running, self.what)} running, {self.waiting} waiting); "
            f"try again in {self.retry_after_s()} s.",
            self.retry_after_s(),
        )

    def too_slow_message(self) -> str:
        hint = "; ask for fewer steps or restarts" if self.name == "project" else ""
        limit = f"{self.timeout_s:g} s"
        return f"The {self.what} ran past this server's time limit of {limit} and was stopped{hint}."

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) on a worker thread within this lane's limits.

        Raises:
            Overloaded: the queue is full, or the request waited past its deadline before it could start.
            TimeLimitExceeded: the work ran past the deadline and stopped itself, or did not finish by
                `GRACE_S` after it (the worker then stays busy until it ends).
        """
        with self._counts:
            if self.accepted >= self.workers + self.queue:
                raise self.overloaded()
            self.accepted += 1
        job = Job(self, time.monotonic() + self.timeout_s)
        try:
            future = self._executor.submit(self._work, job, fn, *args)
        except RuntimeError:  # shut down
            self._finished()
            raise
        future.add_done_callback(lambda _: self._finished())
        waiter = asyncio.wrap_future(future)
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), self.timeout_s + GRACE_S)
        except asyncio.TimeoutError:
            self._abandon(job, future, waiter)
            raise TimeLimitExceeded(self.too_slow_message()) from None
        except asyncio.CancelledError:  # the client went away: stop the work too
            self._abandon(job, future, waiter)
            raise

    @staticmethod
    def _abandon(job: Job, future: Future[Any], waiter: asyncio.Future[Any]) -> None:
        """Stop the work: unstarted, it never starts; started, it stops at its next check. Its outcome, whenever it
        comes, is read and dropped (no "exception was never retrieved")."""
        job.abandoned.set()
        future.cancel()
        waiter.add_done_callback(lambda f: f.cancelled() or f.exception())

    def _work(self, job: Job, fn: Callable[..., T], *args: Any) -> T:
        started = time.monotonic()
        if job.abandoned.is_set() or started > job.deadline:
            raise self.overloaded()  # it waited in the queue for its whole time limit
        with self._counts:
            self.running += 1
        _current.job = job
        try:
            return fn(*args)
        finally:
            _current.job = None
            with self._counts:
                self.running -= 1
            self._service_s = 0.8 * self._service_s + 0.2 * (time.monotonic() - started)

    def _finished(self) -> None:
        with self._counts:
            self.accepted -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
