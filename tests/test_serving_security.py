"""Servers closed to strangers: a `sal serve-prm` requiring a key answers 401 to every other caller before
any model work, tells unkeyed callers of /health only that it is ready (not the model's path), and keeps
its key out of its command line, log and service file (mode 0600); a server listening beyond loopback
without a key warns once; results are written with the mode any file of the user gets (umask)."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict
from pathlib import Path

import httpx
import pytest

from sal_core.constants import CAPACITY_HEADER
from sal_core.serving.launch import start_server, stop_server
from sal_core.serving.service import write_service_file
from sal_core.settings.jobs import PRMSettings
from sal_core.tables import write_table_atomic, write_text_atomic

KEY = "sk-sec-91c0d3e6a7f2"
ENV = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "SAL_TEST_SEC_KEY": KEY}
SCORE = {"problems": ["1+1?"], "completions": [["2.\n\nYes."]]}


def prm_args(tiny_model_path: Path) -> list[str]:
    settings = PRMSettings(name="judge", type="rlhflow", path=str(tiny_model_path), device="cpu", batch_size=4)
    return ["--prm", json.dumps(asdict(settings))]


@pytest.fixture(scope="module")
def keyed(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("keyed")
    args = [*prm_args(tiny_model_path), "--api-key-env", "SAL_TEST_SEC_KEY"]
    process, record = start_server("serve-prm", args, folder / "svc.json", folder / "server.log", env=ENV)
    yield {"url": record["url"], "folder": folder, "pid": process.pid}
    stop_server(process)


def with_key(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_requests_without_the_key_get_401_and_never_reach_the_model(keyed: dict) -> None:
    url = keyed["url"]
    for headers in ({}, with_key("wrong"), {"Authorization": KEY}):
        answer = httpx.post(f"{url}/v1/score", json=SCORE, headers=headers)
        assert answer.status_code == 401 and answer.json()["error"]["type"] == "authentication_error"
        for path in ("/v1/info", "/v1/models", "/openapi.json", "/docs"):
            assert httpx.get(f"{url}{path}", headers=headers).status_code == 401, path
    huge = httpx.post(f"{url}/v1/score", content=b"x" * (65 * 2**20), headers={"content-type": "application/json"})
    assert huge.status_code == 401  # the key is checked before anything else about a request
    assert httpx.get(f"{url}/v1/info", headers=with_key()).json()["stats"]["requests"] == 0
    keyed = httpx.post(f"{url}/v1/score", json=SCORE, headers=with_key())
    assert keyed.status_code == 200 and keyed.headers[CAPACITY_HEADER] == "256"  # its max_batch, to the keyed only
    assert CAPACITY_HEADER not in answer.headers


def test_health_shows_what_is_served_only_to_callers_with_the_key(keyed: dict, tiny_model_path: Path) -> None:
    assert httpx.get(f"{keyed['url']}/health").json() == {"status": "ready"}
    assert httpx.get(f"{keyed['url']}/health", headers=with_key("wrong")).json() == {"status": "ready"}
    assert httpx.get(f"{keyed['url']}/health", headers=with_key()).json()["model"]["path"] == str(tiny_model_path)


def test_the_key_is_in_no_command_line_log_or_service_file(keyed: dict) -> None:
    cmdline = Path(f"/proc/{keyed['pid']}/cmdline").read_bytes()
    assert b"SAL_TEST_SEC_KEY" in cmdline and KEY.encode() not in cmdline
    service = keyed["folder"] / "svc.json"
    assert stat.S_IMODE(service.stat().st_mode) == 0o600
    for path in keyed["folder"].iterdir():
        assert KEY.encode() not in path.read_bytes(), path
    assert "without an API key" not in (keyed["folder"] / "server.log").read_text()


def test_a_server_on_all_interfaces_without_a_key_warns_once(tiny_model_path: Path, tmp_path: Path) -> None:
    args = [*prm_args(tiny_model_path), "--host", "0.0.0.0"]
    env = {k: v for k, v in ENV.items() if k != "SAL_TEST_SEC_KEY"}
    process, _ = start_server("serve-prm", args, tmp_path / "svc.json", tmp_path / "server.log", env=env)
    stop_server(process)
    warnings = [line for line in (tmp_path / "server.log").read_text().splitlines() if "without an API key" in line]
    assert len(warnings) == 1 and "0.0.0.0" in warnings[0], warnings


def test_results_get_the_users_umask_and_service_files_0600(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_text_atomic("a,b\n", tmp_path / "t.csv")
        write_table_atomic([{"a": 1}], tmp_path / "t.parquet")
        write_service_file(tmp_path / "svc.json", {"url": "http://127.0.0.1:1"})
    finally:
        os.umask(old)
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in tmp_path.iterdir()}
    assert modes == {"t.csv": 0o640, "t.parquet": 0o640, "svc.json": 0o600}


def test_with_servers_hands_keys_through_the_environment_only(tiny_model_path: Path) -> None:
    from sal_core.serving.around import server_specs

    entries = {"models": {"v": {"path": str(tiny_model_path), "backend": "vllm"}, "t": {"path": str(tiny_model_path)}}}
    entries["prms"] = {"j": {"type": "rlhflow", "path": str(tiny_model_path)}}
    specs = {spec.name: spec for spec in server_specs(entries, ["v", "t", "j"])}
    # vllm serve reads it (--api-key would show in ps), and is told not to report usage over the network
    vllm_env = specs["v"].env(KEY)
    assert {k: vllm_env[k] for k in ("VLLM_API_KEY", "VLLM_NO_USAGE_STATS", "DO_NOT_TRACK")} == {
        "VLLM_API_KEY": KEY,
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }
    # and kept off the Hub (docs/offline.md): the only other entries, none of them a secret
    assert set(vllm_env) - {"VLLM_API_KEY", "VLLM_NO_USAGE_STATS", "DO_NOT_TRACK"} <= {
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "VLLM_CACHE_ROOT",
    }
    assert specs["t"].env(KEY) == specs["j"].env(KEY) == {"SAL_API_KEY": KEY}
    for spec in specs.values():
        argv = spec.argv("svc.json", host="0.0.0.0")
        assert KEY not in " ".join(argv) and "--api-key" not in argv
        if spec.kind != "vllm":
            assert argv[argv.index("--api-key-env") + 1] == "SAL_API_KEY"
