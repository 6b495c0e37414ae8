"""Requests in flight budgeted per server (backends/server_share.py): each job holds a lease beside the
server's service file and keeps its share of twice the capacity the server announces; stale leases of
killed jobs stop counting; a job's max_in_flight caps its share; without a capacity or a service file a
job keeps the old per-job 32."""

from __future__ import annotations

import os
import time
from pathlib import Path

from sal_core.backends import server_share
from sal_core.backends.server_share import FALLBACK, LEASE_S, ServerShare, announced_capacity, live_leases
from sal_core.constants import CAPACITY_HEADER


def test_the_capacity_header_is_read_when_it_is_a_positive_integer() -> None:
    assert announced_capacity({CAPACITY_HEADER: "256"}) == 256
    for bad in ({}, {CAPACITY_HEADER: "0"}, {CAPACITY_HEADER: "-3"}, {CAPACITY_HEADER: "lots"}):
        assert announced_capacity(bad) is None


def test_jobs_sharing_a_server_split_twice_its_capacity(tmp_path: Path) -> None:
    service = tmp_path / "judge.json"
    first = ServerShare(str(service), None)
    first.note({CAPACITY_HEADER: "48"})
    assert first.in_flight() == 96  # alone: the running batch and the next one
    assert first.in_flight(items_per_request=16) == 6
    second, third = ServerShare(str(service), None), ServerShare(str(service), 10)
    for share in (second, third):
        share.note({CAPACITY_HEADER: "48"})
    assert [s.in_flight() for s in (first, second, third)] == [32, 32, 10]  # the third caps its own share
    assert sorted(p.name.split(".")[1] for p in (tmp_path / "judge.json.clients").iterdir()) == [str(os.getpid())] * 3
    third.close(), second.close()
    assert first.in_flight() == 96 and live_leases(tmp_path / "judge.json.clients") == 1
    first.close()


def test_a_killed_jobs_lease_stops_counting(tmp_path: Path) -> None:
    folder = tmp_path / "gen.json.clients"
    share = ServerShare(str(tmp_path / "gen.json"), None)
    share.note({CAPACITY_HEADER: "100"})
    stale = folder / "node7.4242.0"
    stale.touch()
    assert share.in_flight() == 100
    old = time.time() - LEASE_S - 1
    os.utime(stale, (old, old))
    assert share.in_flight() == 200
    share.close()


def test_the_lease_is_kept_fresh_while_the_job_lives(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(server_share, "HEARTBEAT_S", 0.05)
    share = ServerShare(str(tmp_path / "gen.json"), None)
    lease = share.lease
    old = time.time() - LEASE_S - 1
    os.utime(lease, (old, old))
    deadline = time.monotonic() + 5
    while lease.stat().st_mtime < old + 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert live_leases(lease.parent) == 1
    share.close()
    assert not lease.exists()


def test_without_a_capacity_or_a_service_file_a_job_keeps_the_old_default(tmp_path: Path) -> None:
    silent = ServerShare(str(tmp_path / "old-server.json"), None)
    assert silent.in_flight() == FALLBACK == 32
    by_url = ServerShare(None, 8)
    by_url.note({CAPACITY_HEADER: "512"})
    assert by_url.in_flight() == 8 and ServerShare(None, None).in_flight() == FALLBACK
    silent.close()
