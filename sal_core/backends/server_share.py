"""Requests in flight budgeted per server, not per job: many shard jobs share one server, and each takes
its share of what the server can work on.

A server says in every keyed answer (CAPACITY_HEADER) how many items it works on at once: `sal serve` /
`sal serve-prm` their `max_batch`, a `vllm serve` we start its engine's `max_num_seqs` (read by
serving/vllm_auth.py from the running engine's config, so a GPU's own default counts). A job found
through a service file holds a lease there while it lives: an empty file in `<service file>.clients/`,
touched every HEARTBEAT_S seconds and removed when the job ends (a killed job's lease goes stale after
LEASE_S). Each job keeps

    ceil(HEADROOM * capacity / items per request / live leases)

requests in flight (at least 1): together the jobs keep the server's batch full and one more waiting,
one job alone fills it, a thousand jobs do not pile a queue the server answers 503 to (`sal serve`) or
that waits past the clients' timeout (vLLM). `servers.<name>.max_in_flight`, when set, caps a job's
share; without an announced capacity or a service file (a `url:` location: no place to count the
others) a job keeps FALLBACK in flight, the old per-job default.
"""

from __future__ import annotations

import atexit
import math
import os
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sal_core.constants import CAPACITY_HEADER

#: requests in flight per job when the server announces no capacity or no service file is shared
FALLBACK = 32
#: the jobs together keep this many times the server's capacity in flight: one batch running, one waiting
HEADROOM = 2
#: seconds between two touches of a job's lease, and after which an untouched lease no longer counts
HEARTBEAT_S = 20.0
LEASE_S = 90.0


def announced_capacity(headers: Mapping[str, str]) -> int | None:
    """The capacity a server announced in an answer's headers (None: it announced none or nonsense)."""
    value = headers.get(CAPACITY_HEADER)
    return int(value) if value is not None and value.isdigit() and int(value) > 0 else None


def live_leases(folder: Path, now: float | None = None) -> int:
    """How many leases in `folder` were touched within LEASE_S."""
    now = time.time() if now is None else now
    count = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        try:
            count += now - entry.stat().st_mtime < LEASE_S
        except OSError:
            continue
    return count


class ServerShare:
    """One job's share of one server: its lease beside the server's service file, and the share."""

    def __init__(self, service_file: str | None, cap: int | None) -> None:
        self.cap, self.capacity = cap, None
        self.folder = Path(service_file).with_name(Path(service_file).name + ".clients") if service_file else None
        self.lease: Path | None = None
        self._stop = threading.Event()
        if self.folder is not None:
            self._take_lease(self.folder)

    def _take_lease(self, folder: Path) -> None:
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
            lease = folder / f"{socket.gethostname()}.{os.getpid()}.{id(self):x}"
            lease.touch()
        except OSError:  # a read-only folder: count nobody, as for a `url:` location
            self.folder = None
            return
        self.lease = lease
        threading.Thread(target=self._heartbeat, name="server-lease", daemon=True).start()
        atexit.register(self.close)

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self.lease.touch()  # type: ignore[union-attr]
            except OSError:
                return

    def note(self, headers: Mapping[str, str]) -> None:
        """Read the server's capacity from an answer's headers, when it announces one."""
        self.capacity = announced_capacity(headers) or self.capacity

    def in_flight(self, items_per_request: int = 1) -> int:
        """Requests this job may have in flight now, each carrying up to `items_per_request` items."""
        if self.capacity is None or self.folder is None:
            return min(FALLBACK, self.cap) if self.cap else FALLBACK
        jobs = max(live_leases(self.folder), 1)
        share = max(1, math.ceil(HEADROOM * self.capacity / max(items_per_request, 1) / jobs))
        return min(share, self.cap) if self.cap else share

    def close(self) -> None:
        """Give the lease back (also at exit)."""
        self._stop.set()
        if self.lease is not None:
            self.lease.unlink(missing_ok=True)
            self.lease = None

    def describe(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "cap": self.cap, "leases": str(self.folder) if self.folder else None}
