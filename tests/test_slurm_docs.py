"""docs/slurm.md's served-PRM snippets, run as written (issue 18, item 3): the config snippet turns
math500.yaml into a valid served config whose PRM keeps its step layout, and a client configured by it
accepts the `sal serve-prm` the by-hand example starts (a tiny PRM in place of the 8B one, on loopback)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from sal_core.prm import load_prm
from sal_core.prm.server import SalServerPRM
from sal_core.serving.launch import start_server, stop_server
from sal_core.settings.check import check_config
from sal_core.settings.endpoint import build_servers
from sal_core.settings.jobs import PRMSettings

REPO = Path(__file__).resolve().parent.parent
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
DOC = (REPO / "docs" / "slurm.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, flags=re.DOTALL)


def _served_config_snippet() -> dict:
    (snippet,) = [b for b in _blocks("yaml") if "servers:" in b and "type: server" in b]
    return yaml.safe_load(snippet)


def _serve_prm_args(service_file: Path) -> list[str]:
    """The by-hand `sal serve-prm` command of the doc, split as bash would (after `sbatch ... --wrap`)."""
    (block,) = [b for b in _blocks("bash") if "sal serve-prm" in b]
    joined = block.replace("\\\n", " ")
    (line,) = [ln for ln in joined.splitlines() if "sal serve-prm" in ln]
    wrapped = shlex.split(line)[-1]  # the --wrap string, with bash's quoting undone
    args = shlex.split(wrapped.replace("$PWD/services/rlhflow-8b.json", str(service_file)))
    assert args[:2] == ["sal", "serve-prm"]
    return args[2:]


def test_the_config_snippet_makes_the_published_grid_a_valid_served_config() -> None:
    config = yaml.safe_load((REPO / "config" / "experiments" / "math500.yaml").read_text())
    in_process = PRMSettings.from_dict({"name": "rlhflow-8b", **config["prms"]["rlhflow-8b"]})
    snippet = _served_config_snippet()
    for key in ("models", "prms"):
        config[key].update(snippet[key])
    config["servers"] = snippet["servers"]
    grid = check_config(config, SCHEMA)
    served = grid.prms["rlhflow-8b"]
    assert served.type == "server" and served.step_layout == in_process.step_layout == "sal"


@pytest.mark.slow
def test_a_client_from_the_snippet_accepts_the_documented_server(tmp_path: Path, tiny_model_path: Path) -> None:
    args = _serve_prm_args(tmp_path / "rlhflow-8b.json")
    at = args.index("--prm")
    settings = json.loads(args[at + 1])
    assert settings["name"] == "rlhflow-8b" and settings["type"] == "rlhflow"
    args[at + 1] = json.dumps({**settings, "path": str(tiny_model_path), "device": "cpu"})  # the tiny stand-in
    args[args.index("--host") + 1] = "127.0.0.1"  # loopback only in tests
    env = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    process, _record = start_server("serve-prm", args, tmp_path / "rlhflow-8b.json", tmp_path / "server.log", env=env)
    try:
        snippet = _served_config_snippet()
        location = {**snippet["servers"]["rlhflow-8b"], "service_file": str(tmp_path / "rlhflow-8b.json")}
        prm = load_prm(
            PRMSettings.from_dict({"name": "rlhflow-8b", **snippet["prms"]["rlhflow-8b"]}),
            build_servers({"rlhflow-8b": location}),
        )
        assert isinstance(prm, SalServerPRM)  # its start-up check passed: same model, same step layout
        scores = prm.score(["What is 2+2?"], [["2+2=4.\n\n$\\boxed{4}$"]])
        assert len(scores[0][0]) == 2
    finally:
        stop_server(process)
