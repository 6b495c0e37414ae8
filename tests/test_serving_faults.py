"""Server faults end jobs cleanly: a server killed while a `sal score` / `sal generate` job waits on it
makes the job fail after bounded retries with one line naming the server and no output file (and the
rerun, with the server back, writes it); a server answering garbage or HTTP 500 fails the job naming it.

The broken servers here are small HTTP servers that answer exactly the fault under test."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from http_faults import broken_server

from sal_core.cli import main
from sal_core.pipeline.prepare_dataset import DatasetSettings, snapshot_problems
from sal_core.pipeline.score import score_shard
from sal_core.serving.launch import start_server, stop_server
from sal_core.settings.endpoint import read_servers
from sal_core.settings.jobs import PRMSettings
from sal_core.tables import read_table, write_table_atomic

ENV = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
ROWS = [
    {"problem_id": "p0", "problem": "What is 2+2?", "completions": ["Add.\n\n2+2=4.", "5"]},
    {"problem_id": "p1", "problem": "What is 3*3?", "completions": ["9\n\nSo 9."]},
]
HEALTH = {"status": "ready", "model": {"name": "judge", "type": "rlhflow", "path": "x", "revision": None}}
MODELS = {"object": "list", "data": [{"id": "tiny", "object": "model", "created": 0, "owned_by": "x"}]}


@pytest.fixture
def shard(tmp_path: Path) -> Path:
    return write_table_atomic(ROWS, tmp_path / "completions.parquet")


def problems_file(folder: Path, limit: int) -> Path:
    settings = DatasetSettings.from_dict({"name": "e", "source": "builtin", "path": "easy_math", "limit": limit})
    snapshot_problems(settings, folder / "problems.parquet")
    return folder / "problems.parquet"


PRM_JSON = json.dumps({"name": "judge", "type": "server", "served_model": "judge"})


def servers_json(name: str, **where) -> str:
    """The `--servers` argument: where the server of `name` is, retried twice."""
    return json.dumps({name: {"retries": 2, **where}})


@pytest.mark.parametrize(
    ("answer", "words"),
    [((200, "<html>oops</html>"), "not JSON: '<html>oops</html>'"), ((500, "boom"), "HTTP 500: 'boom'")],
)
def test_a_prm_server_answering_garbage_or_500_fails_the_score_job(shard, tmp_path, capsys, answer, words) -> None:
    routes = {"/health": (200, HEALTH), "/v1/info": (200, {"limits": {}}), "/v1/score": answer}
    out = tmp_path / "scores.parquet"
    with broken_server(routes) as url:
        args = ["--prm", PRM_JSON, "--servers", servers_json("judge", url=url), "--out", str(out)]
        code = main(["score", "--completions", str(shard), *args])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(error) == 1
    assert f"prm server {url}: POST /v1/score answered" in error[0] and words in error[0]
    assert not out.exists()


def test_a_prm_server_answering_wrong_shapes_fails_naming_it(shard, tmp_path, capsys) -> None:
    routes = {"/health": (200, HEALTH), "/v1/info": (200, {}), "/v1/score": (200, {"scores": [[[2.0]], [[0.5]]]})}
    with broken_server(routes) as url:
        args = ["--prm", PRM_JSON, "--servers", servers_json("judge", url=url), "--out", str(tmp_path / "o")]
        code = main(["score", "--completions", str(shard), *args])
    assert code == 2 and f"prm server {url}: answered malformed scores" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("routes", "words"),
    [
        ({"/v1/models": (500, {"error": {"message": "engine dead"}})}, "GET /v1/models answered HTTP 500: engine dead"),
        ({"/v1/models": (200, MODELS), "/v1/completions": (200, {"id": "x"})}, "answered no completion text"),
        ({"/v1/models": (200, MODELS), "/v1/completions": (200, "<html>")}, "POST /v1/completions answered"),
    ],
)
def test_a_model_server_answering_garbage_or_500_fails_the_generate_job(
    tiny_model_path: Path, tmp_path: Path, capsys, routes, words
) -> None:
    problems = problems_file(tmp_path, 1)
    out = tmp_path / "completions.parquet"
    with broken_server(routes) as url:
        model = {"name": "tiny", "path": str(tiny_model_path), "backend": "openai", "served_model": "tiny"}
        job = json.dumps({"model": model, "search": {"method": "best_of_n", "n": 2, "max_tokens": 4}})
        where = ["--servers", servers_json("tiny", url=url, retries=1), "--out", str(out)]
        code = main(["generate", "--problems", str(problems), "--start", "0", "--end", "1", "--job", job, *where])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and f"model server {url}: " in error[-1] and words in error[-1]
    assert not out.exists()


def wait_for_pending(url: str, job: dict, timeout: float = 120.0) -> None:
    """Until the server holds a request of the job (or the job ended, which fails the test)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert job["alive"](), "the job ended before the server was killed"
        if httpx.get(f"{url}/v1/info").json()["pending"] > 0:
            return
        time.sleep(0.2)
    raise AssertionError("the job never reached the server")


@contextmanager
def sal_job(*args: str) -> Iterator[dict]:
    """`sal ARGS` through the CLI's entry point in a thread (the code a Snakemake job runs, without a
    second interpreter start); `code` holds its exit status once the block has ended."""
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(code=main(list(args))), daemon=True)
    thread.start()
    outcome["alive"] = thread.is_alive
    try:
        yield outcome
    finally:
        thread.join(120)


def test_prm_server_killed_mid_job_fails_it_without_output_and_the_rerun_scores(
    tiny_model_path: Path, shard: Path, tmp_path: Path, capsys
) -> None:
    judge = {"name": "judge", "type": "rlhflow", "path": str(tiny_model_path), "device": "cpu"}
    service = tmp_path / "prm.json"
    # a 5 s batching window keeps the job's request inside the server when it is killed
    args = ["--prm", json.dumps(judge), "--batch-window-ms", "5000"]
    server, record = start_server("serve-prm", args, service, tmp_path / "server.log", env=ENV)
    out = tmp_path / "scores" / "judge.parquet"
    try:
        where = ["--servers", servers_json("judge", service_file=str(service)), "--out", str(out)]
        with sal_job("score", "--completions", str(shard), "--prm", PRM_JSON, *where) as job:
            wait_for_pending(record["url"], job)
            server.kill()  # SIGKILL: no clean shutdown, the stale service file stays behind
    finally:
        stop_server(server)
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert job["code"] == 2
    assert last.startswith(f"sal score: error: prm server {record['url']} (service file {service}): POST /v1/score")
    assert "failed after 3 attempts" in last
    assert not out.exists() and not list(out.parent.glob("*")), "no output, not even a partial one"

    server, record = start_server("serve-prm", ["--prm", json.dumps(judge)], service, tmp_path / "again.log", env=ENV)
    try:  # the rerun finds the new server through the same service file
        score_shard(shard, PRMSettings.from_dict(json.loads(PRM_JSON)), out, read_servers(where[1]))
    finally:
        stop_server(server)
    assert [len(s) for s in read_table(out)["scores"][0]] == [2, 1]


def test_model_server_killed_mid_job_fails_it_without_output(tiny_model_path: Path, tmp_path: Path, capsys) -> None:
    settings = {"name": "tiny", "path": str(tiny_model_path), "device": "cpu", "max_model_len": 256}
    service = tmp_path / "gen.json"
    args = ["--model", json.dumps(settings), "--batch-window-ms", "5000"]
    server, record = start_server("serve", args, service, tmp_path / "server.log", env=ENV)
    problems = problems_file(tmp_path, 2)
    model = {**settings, "backend": "openai", "served_model": "tiny"}
    job_json = json.dumps({"model": model, "search": {"method": "best_of_n", "n": 2, "max_tokens": 8}})
    out = tmp_path / "completions.parquet"
    shard = [
        "--problems",
        str(problems),
        "--start",
        "0",
        "--end",
        "2",
        "--servers",
        servers_json("tiny", service_file=str(service)),
    ]
    try:
        with sal_job("generate", *shard, "--job", job_json, "--out", str(out)) as job:
            wait_for_pending(record["url"], job)
            server.kill()
    finally:
        stop_server(server)
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert job["code"] == 2
    assert last.startswith(f"sal generate: error: model server {record['url']} (service file {service}): ")
    assert "failed after 3 attempts" in last
    assert not out.exists() and not list(tmp_path.glob(".completions.parquet.*"))
