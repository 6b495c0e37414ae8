"""Load on one `sal serve-prm`: a few client processes, each with many concurrent async requests.

Loopback only, bounded in count and time. The server runs the tiny random-weight PRM (`tiny-random`,
built if missing) with an API key and a small bounded queue (`--max-queue`), so some requests are
answered 503; clients retry those with exponential backoff and jitter. Every request carries its own
id in its problem text; the run checks that each gets exactly one answer (scores of the right shape),
counts what the server computed beyond that (duplicates: requests it scored whose answers a client
did not take, from /v1/info's counters), and reports throughput, p50/p99 latency (first send to
answer, retries included) and the server's resident memory over the run (sampled every 0.5 s).

    python bench/serve_load.py                                   # 4 clients x 64 in flight, 2000 requests
    python bench/serve_load.py --clients 2 --requests 200        # quicker

Measured here (2 shared cores, load average 1.9), the first command:

    answered exactly once: 2000/2000; errors: 0
    503 answers retried: 1162; scored by the server: 2000 (duplicates: 0)
    wall 17.5 s; throughput 114.0 requests/s; latency p50 1612 ms, p99 8454 ms
    server RSS MB: first quarter max 513.4, last quarter max 514.6, overall max 514.6 (36 samples)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

import httpx

from sal_core.pipeline.prepare_model import prepare_model
from sal_core.serving.launch import start_server, stop_server
from sal_core.settings.jobs import PRMSettings

REPO = Path(__file__).resolve().parent.parent
MODEL_DIR = REPO / "resources" / "models" / "tiny-random"
KEY = os.environ.setdefault("SAL_LOAD_KEY", os.urandom(16).hex())  # the client processes inherit it


async def client(url: str, key: str, ids: list[str], in_flight: int, deadline: float) -> dict:
    """Send one /v1/score request per id, `in_flight` at a time, retrying 503s; what happened."""
    headers = {"Authorization": f"Bearer {key}"}
    answers: dict[str, int] = {}
    latencies, retries, refused, errors = [], 0, 0, []
    gate = asyncio.Semaphore(in_flight)
    limits = httpx.Limits(max_connections=in_flight)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120, limits=limits) as http:

        async def one(rid: str) -> None:
            nonlocal retries, refused
            body = {"problems": [f"Request {rid}: what is 2+2?"], "completions": [["2+2=4.\n\nSo 4.", "5"]]}
            async with gate:
                started = time.perf_counter()
                for attempt in range(30):
                    if time.monotonic() > deadline:
                        errors.append(f"{rid}: out of time")
                        return
                    response = await http.post("/v1/score", json=body)
                    if response.status_code == 503:
                        refused += 1
                        retries += 1
                        await asyncio.sleep(min(0.05 * 2**attempt, 2.0) * (0.5 + random.random()))
                        continue
                    if response.status_code != 200:
                        errors.append(f"{rid}: HTTP {response.status_code}")
                        return
                    scores = response.json()["scores"]
                    if len(scores) != 1 or len(scores[0]) != 2:
                        errors.append(f"{rid}: scores of the wrong shape")
                    answers[rid] = answers.get(rid, 0) + 1
                    latencies.append(time.perf_counter() - started)
                    return
                errors.append(f"{rid}: still refused after 30 attempts")

        await asyncio.gather(*(one(rid) for rid in ids))
    return {"answers": answers, "latencies": latencies, "retries": retries, "refused": refused, "errors": errors}


def client_process(url: str, ids: list[str], in_flight: int, deadline: float, out: multiprocessing.Queue) -> None:
    out.put(asyncio.run(client(url, KEY, ids, in_flight, deadline)))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def sample_memory(pid: int, samples: list[float], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            samples.append(rss_mb(pid))
        except OSError:
            return
        stop.wait(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--in-flight", type=int, default=64, help="concurrent requests per client")
    parser.add_argument("--requests", type=int, default=2000, help="requests in all")
    parser.add_argument("--max-queue", type=int, default=16, help="the server's queue bound (more: 503)")
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds the clients may take")
    args = parser.parse_args()
    if not (MODEL_DIR / "config.json").is_file():
        prepare_model("tiny-random", str(MODEL_DIR))
    settings = PRMSettings(name="judge", type="rlhflow", path=str(MODEL_DIR), device="cpu", batch_size=32)
    folder = Path(tempfile.mkdtemp(prefix="serve-load-"))
    server_args = ["--prm", json.dumps(asdict(settings)), "--api-key-env", "SAL_LOAD_KEY"]
    server_args += ["--max-queue", str(args.max_queue), "--batch-window-ms", "10"]
    env = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "SAL_LOAD_KEY": KEY}
    process, record = start_server("serve-prm", server_args, folder / "svc.json", folder / "server.log", env=env)
    url = record["url"]
    assert url.startswith("http://127.0.0.1:"), url  # loopback only
    try:
        run(url, process.pid, args)
    finally:
        stop_server(process)


def run(url: str, pid: int, args: argparse.Namespace) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    ids = [f"{i:06d}" for i in range(args.requests)]
    shares = [ids[c :: args.clients] for c in range(args.clients)]
    samples: list[float] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_memory, args=(pid, samples, stop), daemon=True)
    warm = asyncio.run(client(url, KEY, ["warm"], 1, time.monotonic() + 60))  # first batch: lazy allocations
    assert not warm["errors"], warm
    before = httpx.get(f"{url}/v1/info", headers=headers).json()["stats"]["requests"]
    sampler.start()
    out: multiprocessing.Queue = multiprocessing.Queue()
    deadline = time.monotonic() + args.time_limit
    started = time.perf_counter()
    workers = [
        multiprocessing.Process(target=client_process, args=(url, share, args.in_flight, deadline, out))
        for share in shares
    ]
    for worker in workers:
        worker.start()
    results = [out.get(timeout=args.time_limit + 60) for _ in workers]
    wall = time.perf_counter() - started
    for worker in workers:
        worker.join()
    stop.set()
    sampler.join()
    computed = httpx.get(f"{url}/v1/info", headers=headers).json()["stats"]["requests"] - before
    report(results, ids, computed, wall, samples, args)


def report(results: list[dict], ids: list[str], computed: int, wall: float, samples: list[float], args) -> None:
    answers: dict[str, int] = {}
    for result in results:
        for rid, count in result["answers"].items():
            answers[rid] = answers.get(rid, 0) + count
    latencies = sorted(x for result in results for x in result["latencies"])
    errors = [e for result in results for e in result["errors"]]
    once = sum(1 for rid in ids if answers.get(rid) == 1)
    p50 = statistics.median(latencies) if latencies else float("nan")
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else float("nan")
    quarter = max(len(samples) // 4, 1)
    print(f"clients {args.clients} x {args.in_flight} in flight, {len(ids)} requests, queue bound {args.max_queue}")
    print(f"answered exactly once: {once}/{len(ids)}; errors: {len(errors)} {errors[:3]}")
    print(
        f"503 answers retried: {sum(r['refused'] for r in results)}; scored by the server: {computed} "
        f"(duplicates: {computed - sum(answers.values())})"
    )
    print(
        f"wall {wall:.1f} s; throughput {len(latencies) / wall:.1f} requests/s; latency p50 {p50 * 1000:.0f} ms, "
        f"p99 {p99 * 1000:.0f} ms"
    )
    print(
        f"server RSS MB: first quarter max {max(samples[:quarter]):.1f}, last quarter max "
        f"{max(samples[-quarter:]):.1f}, overall max {max(samples):.1f} ({len(samples)} samples)"
    )
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    sys.exit(0 if once == len(ids) and not errors else 1)


if __name__ == "__main__":
    main()
