"""Micro-batching: requests from many clients that arrive within a short window become one model call.

A model call on a batch of 64 costs little more than on a batch of 1, so a server that ran each
HTTP request on its own would waste most of the machine when many shard jobs share it. The batcher
queues requests (a bounded queue: a full one is refused, so clients back off instead of piling up),
takes the first, waits up to `window_s` for more, and hands the whole batch to `process` in a worker
thread (the event loop keeps answering /health meanwhile). While a batch runs, new requests queue up
and form the next batch. Shared by `sal serve` and `sal serve-prm`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


class QueueFullError(Exception):
    """The batcher's queue is full: the server answers 503 and the client retries later."""


@dataclass
class BatchStats:
    """Counters a server exposes on its info endpoint (tests read them to see batching happen)."""

    unit: str
    requests: int = 0
    items: int = 0
    batches: int = 0
    failed_batches: int = 0
    rejected: int = 0
    busy_s: float = 0.0
    started: float = field(default_factory=time.monotonic)

    def as_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "requests": self.requests,
            self.unit: self.items,
            "batches": self.batches,
            "failed_batches": self.failed_batches,
            "rejected": self.rejected,
            "busy_s": round(self.busy_s, 3),
            "uptime_s": round(time.monotonic() - self.started, 3),
            f"{self.unit}_per_s": round(self.items / self.busy_s, 3) if self.busy_s > 0 else None,
        }


@dataclass
class _Pending:
    payload: Any
    size: int
    future: asyncio.Future


class MicroBatcher:
    """Queue requests and run them through `process` in merged batches.

    `process` takes a list of payloads and returns one result per payload, in order; it runs in a
    single worker thread, so the model is never called from two threads at once. `size` of a request
    is its number of items (completions, prompts); a batch holds at most `max_batch` items (a larger
    request runs on its own).
    """

    def __init__(
        self,
        process: Callable[[list[Any]], Sequence[Any]],
        *,
        max_batch: int,
        window_s: float,
        max_queue: int,
        unit: str = "items",
    ) -> None:
        self.process = process
        self.max_batch = max_batch
        self.window_s = window_s
        self.max_queue = max_queue
        self.stats = BatchStats(unit)
        #: requests accepted and not yet answered
        self.pending = 0
        self._queue: asyncio.Queue[_Pending] | None = None
        self._held: _Pending | None = None
        self._task: asyncio.Task | None = None
        self._getter: asyncio.Future | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch")

    async def start(self) -> None:
        self._queue = asyncio.Queue(self.max_queue)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._getter is not None:
            self._getter.cancel()
        while self._queue is not None and not self._queue.empty():
            pending = self._queue.get_nowait()
            if not pending.future.done():
                pending.future.set_exception(RuntimeError("server shutting down"))
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def queued(self) -> int:
        """Requests waiting for a batch (not counting those in the batch being collected or run)."""
        return (self._queue.qsize() if self._queue else 0) + (self._held is not None)

    async def submit(self, payload: Any, size: int) -> Any:
        """Queue one request and wait for its result; QueueFullError when the queue is full."""
        assert self._queue is not None, "MicroBatcher.start() was not awaited"
        future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Pending(payload, size, future))
        except asyncio.QueueFull:
            self.stats.rejected += 1
            raise QueueFullError(f"queue full ({self.max_queue} requests waiting)") from None
        self.pending += 1
        try:
            return await future
        finally:
            self.pending -= 1

    async def _next(self, timeout: float | None) -> _Pending | None:
        """The next queued request, or None after `timeout` seconds. The pending `get` is kept for the
        next call rather than cancelled, so a request arriving at the deadline is never lost."""
        if self._held is not None:
            pending, self._held = self._held, None
            return pending
        assert self._queue is not None
        if self._getter is None:
            self._getter = asyncio.ensure_future(self._queue.get())
        done, _ = await asyncio.wait({self._getter}, timeout=None if timeout is None else max(timeout, 0.0))
        if not done:
            return None
        pending, self._getter = self._getter.result(), None
        return pending

    async def _collect(self) -> list[_Pending]:
        """The next batch: the first request, then whatever arrives within the window and fits."""
        loop = asyncio.get_running_loop()
        first = await self._next(None)
        assert first is not None
        batch, total = [first], first.size
        deadline = loop.time() + self.window_s
        while total < self.max_batch:
            pending = await self._next(deadline - loop.time())
            if pending is None:
                break
            if total + pending.size > self.max_batch:
                self._held = pending
                break
            batch.append(pending)
            total += pending.size
        return batch

    async def _run(self) -> None:
        while True:
            batch = [p for p in await self._collect() if not p.future.done()]
            if batch:
                await self._execute(batch)

    async def _execute(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        items = sum(p.size for p in batch)
        started = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, self.process, [p.payload for p in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for {len(batch)} requests")
        except Exception as err:  # the batch fails, the server keeps serving
            self.stats.failed_batches += 1
            if len(batch) > 1:  # one bad request must not fail its neighbours: each again, alone
                log.warning(
                    "batch of %d requests failed (%s: %s); running them one by one", len(batch), type(err).__name__, err
                )
                for pending in batch:
                    await self._execute([pending])
                return
            log.exception("batch of %d requests failed", len(batch))
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(err)
            return
        elapsed = time.perf_counter() - started
        for pending, result in zip(batch, results, strict=True):
            if not pending.future.done():
                pending.future.set_result(result)
        stats = self.stats
        stats.requests += len(batch)
        stats.items += items
        stats.batches += 1
        stats.busy_s += elapsed
        log.info(
            "batch %d: %d requests, %d %s in %.2f s (%.1f %s/s); total %d requests, %d %s, %.1f %s/s busy",
            stats.batches,
            len(batch),
            items,
            stats.unit,
            elapsed,
            items / elapsed if elapsed > 0 else float("nan"),
            stats.unit,
            stats.requests,
            stats.items,
            stats.unit,
            stats.items / stats.busy_s if stats.busy_s > 0 else float("nan"),
            stats.unit,
        )
