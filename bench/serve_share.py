"""Requests in flight per server, not per job (backends/server_share.py): several scoring jobs share one
`sal serve-prm`, first each with a fixed 32 requests in flight (the old per-job rule, reached through
`url:`, where no share is taken), then each with its share of the capacity the server announces
(through its service file). Loopback only; the tiny random-weight PRM (`tiny-random`, built if missing).

The server is small on purpose, as a busy shared server is: `--max-batch` completions per model call,
`--max-request-items` per request (the client's chunk), `--max-queue` waiting requests, beyond which it
answers 503 and clients back off (0.5 s, 1 s, 2 s ...; a job fails after `retries`).

    python bench/serve_share.py                      # 4 jobs x 64 completions, batch 16, queue 16
    python bench/serve_share.py --jobs 2 --completions 32

Measured here (2 cores shared with other agents, load average 13 to 20), the first command, the modes
in both orders after one warm-up request (each job: 16 requests of 4 completions):

    per job, 32 in flight:     wall 11.6 s and 6.2 s; 503 answers 108 and 92; jobs failed 2 and 0
    per server, a share each:  wall  5.9 s and 4.5 s; 503 answers   0 and  0; jobs failed 0 and 0
                               (2 requests in flight per job: ceil(2 x 16 / 4 / 4 jobs))
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import httpx

from sal_core.pipeline.prepare_model import prepare_model
from sal_core.serving.launch import start_server, stop_server
from sal_core.settings.jobs import PRMSettings

REPO = Path(__file__).resolve().parent.parent
MODEL_DIR = REPO / "resources" / "models" / "tiny-random"
KEY_ENV = "SAL_SHARE_KEY"
KEY = os.environ.setdefault(KEY_ENV, os.urandom(16).hex())  # the job processes inherit it


def job(location: dict, completions: int, ready: multiprocessing.Queue, start: multiprocessing.Event,
        results: multiprocessing.Queue) -> None:  # fmt: skip
    """One scoring job: a `type: server` PRM scoring `completions` completions of one problem."""
    from sal_core.errors import ServerError
    from sal_core.prm import load_prm
    from sal_core.settings.endpoint import build_servers

    settings = PRMSettings(name="judge", type="server", served_model="judge")
    prm = load_prm(settings, build_servers({"judge": location}))
    texts = [f"Step 1: {i} + {i} = {2 * i}.\n\nSo {2 * i}." for i in range(completions)]
    ready.put(os.getpid())
    start.wait()
    in_flight = prm.http.share.in_flight(prm.chunk)  # as the job starts scoring: all leases taken
    began = time.perf_counter()
    try:
        prm.score(["Double a number."], [texts])
        outcome = "ok"
    except ServerError as err:
        outcome = str(err).split(": ", 2)[-1][:120]
    results.put({"seconds": time.perf_counter() - began, "outcome": outcome, "in_flight": in_flight})


def run(label: str, location: dict, jobs: int, completions: int, url: str) -> dict:
    """All jobs at once (after each has loaded), the server's counters before and after."""
    headers = {"Authorization": f"Bearer {KEY}"}
    before = httpx.get(f"{url}/v1/info", headers=headers).json()["stats"]
    ctx = multiprocessing.get_context("spawn")
    ready, start, results = ctx.Queue(), ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=job, args=(location, completions, ready, start, results)) for _ in range(jobs)]
    for worker in workers:
        worker.start()
    for _ in workers:  # every job has loaded (and taken its lease) before any sends
        ready.get(timeout=600)
    start.set()
    began = time.perf_counter()
    done = [results.get(timeout=900) for _ in workers]
    wall = time.perf_counter() - began
    for worker in workers:
        worker.join()
    after = httpx.get(f"{url}/v1/info", headers=headers).json()["stats"]
    delta = {k: after[k] - before[k] for k in ("requests", "completions", "batches", "rejected", "busy_s")}
    failed = [d["outcome"] for d in done if d["outcome"] != "ok"]
    row = {"mode": label, "wall_s": round(wall, 1), "jobs_failed": len(failed), **delta}
    row["completions_per_batch"] = round(delta["completions"] / max(delta["batches"], 1), 1)
    row["in_flight_per_job"] = sorted({d["in_flight"] for d in done})
    row["failures"] = failed[:2]
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--completions", type=int, default=64, help="completions each job scores")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--max-queue", type=int, default=16)
    parser.add_argument("--chunk", type=int, default=4, help="the server's --max-request-items (the client's chunk)")
    args = parser.parse_args()
    if not (MODEL_DIR / "config.json").is_file():
        prepare_model("tiny-random", MODEL_DIR)
    settings = PRMSettings(name="judge", type="rlhflow", path=str(MODEL_DIR), device="cpu", batch_size=args.max_batch)
    limits = ["--max-batch", str(args.max_batch), "--max-queue", str(args.max_queue)]
    server_args = ["--prm", json.dumps(asdict(settings)), "--api-key-env", KEY_ENV, *limits]
    server_args += ["--max-request-items", str(args.chunk)]
    env = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryDirectory() as folder:
        service = Path(folder) / "judge.json"
        process, record = start_server("serve-prm", server_args, service, Path(folder) / "server.log", env=env)
        try:
            common = {"api_key_env": KEY_ENV, "retries": 3, "timeout": 300}
            modes = {
                "per job: 32 in flight": {"url": record["url"], "max_in_flight": 32, **common},
                "per server: a share each": {"service_file": str(service), **common},
            }
            warm = {"model": "judge", "problems": ["1+1?"], "completions": [["2."]]}
            httpx.post(f"{record['url']}/v1/score", json=warm, headers={"Authorization": f"Bearer {KEY}"}, timeout=300)
            rows = []
            for label in [*modes, *reversed(modes)]:  # both orders: neither gains from going second
                rows.append(run(label, modes[label], args.jobs, args.completions, record["url"]))
        finally:
            stop_server(process)
    print(f"{args.jobs} jobs x {args.completions} completions; server max_batch {args.max_batch}, "
          f"max_queue {args.max_queue}, {args.chunk} completions per request")  # fmt: skip
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
