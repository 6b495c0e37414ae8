"""Servers around a command: `sal with-servers` starts `sal serve` and `sal serve-prm` from a workflow
config's entries, runs the command once both answer, passes on its exit status and stops them; `sal
announce` gives any OpenAI-compatible server a service file once /health answers and removes it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from sal_core.cli import main
from sal_core.errors import ConfigError
from sal_core.serving.around import server_specs, vllm_command
from sal_core.settings.jobs import ModelSettings

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
SAL = [sys.executable, "-m", "sal_core.cli"]
# run by with-servers once the servers answer: asks both what they serve with the run's key, checks that
# a caller without it is refused and that the key is in no command line, service file or log; exits with 3
PROBE = """
import json, os, pathlib, sys, httpx
key = os.environ["SAL_API_KEY"]
assert len(key) >= 40, key
for name in ("tiny", "judge"):
    record = json.load(open(f"{sys.argv[1]}/{name}.json"))
    health = httpx.get(record["url"] + "/health", headers={"Authorization": f"Bearer {key}"}).json()
    assert httpx.get(record["url"] + "/health").json() == {"status": "ready"}
    assert httpx.get(record["url"] + "/v1/models").status_code == 401
    assert key.encode() not in pathlib.Path(f"/proc/{record['pid']}/cmdline").read_bytes()
    print(name, health["model"]["name"], record["pid"])
for path in [*pathlib.Path(sys.argv[1]).iterdir(), *pathlib.Path(sys.argv[2]).iterdir()]:
    assert key.encode() not in path.read_bytes(), path
sys.exit(3)
"""


def config(model: Path) -> dict:
    return {
        "models": {"tiny": {"path": str(model), "max_model_len": 256, "device": "cpu"}},
        "prms": {"judge": {"type": "rlhflow", "path": str(model), "device": "cpu"}},
    }


def test_with_servers_runs_the_command_between_server_start_and_stop(tiny_model_path: Path, tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config(tiny_model_path)))
    services = tmp_path / "services"
    argv = [*SAL, "with-servers", "--config", str(tmp_path / "config.yaml"), "--serve", "tiny", "--serve", "judge"]
    argv += ["--services", str(services), "--logs", str(tmp_path / "logs"), "--", sys.executable, "-c", PROBE]
    result = subprocess.run(
        [*argv, str(services), str(tmp_path / "logs")], capture_output=True, text=True, env=ENV, timeout=300
    )
    assert result.returncode == 3, result.stderr[-2000:]  # the command's own status
    lines = [line.split() for line in result.stdout.splitlines()]
    assert [line[:2] for line in lines] == [["tiny", "tiny"], ["judge", "judge"]]
    assert not list(services.glob("*.json")), "the servers were stopped and removed their service files"
    for _, _, pid in lines:
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)
    assert "loaded" in (tmp_path / "logs" / "tiny.log").read_text()


def test_with_servers_names_an_unknown_entry_before_starting_anything(tmp_path: Path, tiny_model_path, capsys) -> None:
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config(tiny_model_path)))
    code = main(["with-servers", "--config", str(tmp_path / "config.yaml"), "--serve", "nope", "--", "true"])
    assert code == 2
    assert "--serve nope: not an entry of the config's models or prms (those: judge, tiny)" in capsys.readouterr().err


def test_a_vllm_entry_is_served_by_vllm_serve_with_its_settings(tiny_model_path: Path) -> None:
    entry = {"path": str(tiny_model_path), "backend": "vllm", "max_model_len": 1024, "tensor_parallel_size": 2}
    (spec,) = server_specs({"models": {"qwen": entry}}, ["qwen"])
    argv = spec.argv("services/qwen.json", host="0.0.0.0")
    assert argv[argv.index("announce") :][:6] == [
        "announce",
        "--service-file",
        "services/qwen.json",
        "--host",
        "0.0.0.0",
        "--",
    ]
    assert argv[argv.index("--") + 1 :] == vllm_command(ModelSettings(name="qwen", **entry))
    assert vllm_command(ModelSettings(name="qwen", **entry)) == [
        "vllm", "serve", str(tiny_model_path), "--served-model-name", "qwen", "--generation-config", "vllm",
        "--tensor-parallel-size", "2", "--gpu-memory-utilization", "0.9", "--max-model-len", "1024",
        "--enable-prefix-caching", "--dtype", "auto", "--no-enforce-eager", "--seed", "0",
        "--middleware", "sal_core.serving.vllm_auth.RequireKey",  # the key on every route, not /v1 only
    ]  # fmt: skip
    # on vLLM's CPU build: the CPU engine's defaults (backends.vllm_engine), the same flags otherwise
    cpu = vllm_command(ModelSettings(name="qwen", **entry), cpu=True)
    assert cpu[cpu.index("--gpu-memory-utilization") + 1] == "0.2" and "--enforce-eager" in cpu
    assert "--no-enable-chunked-prefill" in cpu and cpu[cpu.index("--dtype") + 1] == "float32"


def test_a_qwen_prm_entry_is_served_by_vllm_pooling_with_its_step_tag(tiny_model_path: Path, tmp_path: Path) -> None:
    """`--serve-vllm NAME`: `vllm serve --runner pooling` with the entry's settings and the id of "<extra_0>"
    in its own tokenizer (vLLM's default is the released vocabulary's 151651)."""
    from transformers import AutoTokenizer

    folder = tmp_path / "prm"
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    tokenizer.add_tokens(["<extra_0>"], special_tokens=True)
    tokenizer.save_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({"max_position_embeddings": 256}))
    entry = {"type": "qwen2.5-math", "path": str(folder), "max_length": 512}
    models = {"tiny": {"path": str(tiny_model_path)}}
    specs = server_specs(
        {"models": models, "prms": {"qprm": entry, "judge": {"type": "rlhflow", "path": "org/judge"}}}, [], ["qprm"]
    )
    (spec,) = specs
    argv = spec.argv("services/qprm.json")
    assert spec.kind == "vllm-pooling" and spec.env("k")["VLLM_API_KEY"] == "k"
    command = argv[argv.index("--") + 1 :]
    assert command[:10] == ["vllm", "serve", str(folder), "--runner", "pooling", "--served-model-name", "qprm",
                           "--trust-remote-code", "--max-model-len", "256"]  # fmt: skip
    assert command[command.index("--pooler-config") + 1] == json.dumps({"step_tag_id": len(tokenizer) - 1})
    assert command[-2:] == ["--middleware", "sal_core.serving.vllm_auth.RequireKey"]
    with pytest.raises(ConfigError, match="--serve-vllm judge: vLLM's pooling API serves Qwen2.5-Math-PRM"):
        server_specs({"models": models, "prms": {"judge": {"type": "rlhflow", "path": "org/judge"}}}, [], ["judge"])
    with pytest.raises(ConfigError, match="--serve and --serve-vllm both name qprm"):
        server_specs({"models": models, "prms": {"qprm": entry}}, ["qprm"], ["qprm"])
    entry["path"] = str(tiny_model_path)  # a tokenizer without the step tag
    with pytest.raises(ConfigError, match="has no <extra_0> token"):
        server_specs({"models": models, "prms": {"qprm": entry}}, [], ["qprm"])


def test_announce_writes_the_service_file_once_the_server_answers(tiny_model_path: Path, tmp_path: Path) -> None:
    service = tmp_path / "svc.json"
    model = json.dumps({"name": "tiny", "path": str(tiny_model_path), "device": "cpu", "max_model_len": 256})
    argv = [*SAL, "announce", "--service-file", str(service), "--", *SAL, "serve", "--model", model]
    process = subprocess.Popen(argv, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not service.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        record = json.loads(service.read_text())  # written only once /health answered
        assert record["pid"] == process.pid and record["kind"] == "external"
        assert httpx.get(f"{record['url']}/v1/models").json()["data"][0]["id"] == "tiny"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    assert not service.exists(), "removed when the server stops"


def test_sigterm_to_with_servers_passes_to_the_command_and_stops_the_servers(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    """scancel / a job's time limit sends SIGTERM: the command gets it, then the servers are stopped."""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config(tiny_model_path)))
    services, marker = tmp_path / "services", tmp_path / "command-got-sigterm"
    command = "import signal, sys, time\n"
    command += f"signal.signal(signal.SIGTERM, lambda *a: (open({str(marker)!r}, 'w').close(), sys.exit(5)))\n"
    command += "time.sleep(120)"
    argv = [*SAL, "with-servers", "--config", str(tmp_path / "config.yaml"), "--serve", "judge"]
    argv += ["--services", str(services), "--logs", str(tmp_path / "logs"), "--", sys.executable, "-c", command]
    process = subprocess.Popen(argv, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (services / "judge.json").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    server_pid = json.loads((services / "judge.json").read_text())["pid"]
    time.sleep(1.0)  # the command is running
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 5, process.stderr.read()[-2000:]  # the command's own status
    assert marker.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(server_pid, 0)
    assert not (services / "judge.json").exists()
