"""Config checking and grid expansion: which runs a config asks for, and one clear line per mistake."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from sal_core.errors import ConfigError
from sal_core.settings.build import to_json
from sal_core.settings.check import check_config

REPO = Path(__file__).resolve().parent.parent
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
CONFIGS = sorted((REPO / "config").glob("*.yaml")) + sorted((REPO / "config" / "experiments").glob("*.yaml"))


def smoke() -> dict:
    return yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())


def serve(config: dict) -> dict:
    """`config` (the smoke config) with its model and PRM behind servers."""
    config["models"]["tiny"].update(backend="openai", served_model="tiny")
    config["prms"]["tiny-judge"] = {"type": "server", "served_model": "tiny-judge"}
    config["servers"] = {"tiny": {"url": "http://node1:8000"}, "tiny-judge": {"service_file": "services/judge.json"}}
    return config


def served(edit):
    """An edit of the served smoke config."""
    return lambda config: edit(serve(config))


def served_smoke() -> dict:
    return serve(smoke())


def test_runs_per_method_follow_the_search_rules() -> None:
    grid = check_config(smoke(), SCHEMA)
    by_id = {}
    for run in grid.runs:
        by_id.setdefault(run.run_id, set()).add(run.n)
    # Best-of-N and DVTS run once at their largest n; beam search once per n; guided ids carry the PRM.
    assert by_id == {"bon": {4}, "beam-n2.tiny-judge": {2}, "beam-n4.tiny-judge": {4}, "dvts.tiny-judge": {4}}
    assert len(grid.runs) == 4 * 2 * 1  # run ids x samplings x seeds x models
    assert grid.prepared == {"resources/models/tiny-random": "tiny-random"}
    bon = grid.run("tiny", "bon", "mix", 0)
    assert bon.job.search.temperatures == [0.5, 1.0] and bon.job.search.temperature_ratios == [0.25, 0.75]
    assert bon.job.prm is None
    assert grid.run("tiny", "dvts.tiny-judge", "t1.0", "0").job.prm.name == "tiny-judge"


def test_two_settings_never_share_a_run_id() -> None:
    config = smoke()
    config["prms"]["other"] = dict(config["prms"]["tiny-judge"])
    config["approaches"]["dvts2"] = {**config["approaches"]["dvts"], "prm": "other"}
    grid = check_config(config, SCHEMA)
    ids = [(r.model, r.run_id, r.sampling, r.seed) for r in grid.runs]
    assert len(ids) == len(set(ids))
    assert "dvts2.other" in grid.run_ids()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.update(bogus=1), r"^bogus: unknown key \(allowed: approaches, dataset"),
        (lambda c: c["approaches"]["bon"].update(nn=4), r"^approaches.bon.nn: unknown key"),
        (lambda c: c["approaches"]["beam"].update(n=[3]), r"^approaches.beam.n: 3 is not a multiple of beam_width 2"),
        (
            lambda c: c["samplings"]["mix"].update(temperature_ratios=[0.5, 0.6]),
            r"^samplings.mix.temperature_ratios: must sum to 1, got 1.1",
        ),
        (
            lambda c: c["samplings"]["mix"].update(temperature_ratios=[1.0]),
            r"^samplings.mix.temperature_ratios: 1 ratios for 2 temperatures",
        ),
        (lambda c: c.update(score_prms=["nope"]), r"^score_prms: 'nope' is not a PRM defined under prms"),
        (lambda c: c.update(search_prm="nope"), r"^search_prm: 'nope' is not a PRM defined under prms"),
        (lambda c: c["prms"]["tiny-judge"].update(type="orm"), r"^prms.tiny-judge.type: 'orm' is not one of rlhflow"),
        (lambda c: c["models"]["tiny"].update(backend="tgi"), r"^models.tiny.backend: 'tgi' is not one of"),
        (lambda c: c["approaches"]["bon"].update(n="x"), r"^approaches.bon.n: 'x' is not valid"),
        (lambda c: c["approaches"]["bon"].update(method="mcts"), r"^approaches.bon.method: 'mcts' is not one of"),
        (lambda c: c.pop("seeds"), r"^config: 'seeds' is a required property"),
        (
            lambda c: c["models"].update(other={"path": "/no/such/model"}),
            r"^models.other.path: /no/such/model is neither a local model folder nor a Hub model name",
        ),
        (lambda c: c["approaches"]["bon"].update(seed=3), r"^approaches.bon.seed: unknown key \(allowed: aggregation"),
        (
            lambda c: c["evaluation"].update(baseline_sampling="t0.8"),
            r"^evaluation.baseline_sampling: 't0.8' is not a sampling defined under samplings \(defined: t1.0, mix\)",
        ),
        (served(lambda c: c["servers"].pop("tiny")), r"^servers.tiny: missing: models.tiny is served"),
        (
            served(lambda c: c["servers"].update(other={"url": "http://a:1"})),
            r"^servers.other: not a model with backend openai",
        ),
        (
            served(lambda c: c["servers"]["tiny"].update(service_file="s.json")),
            r"^servers.tiny.url: give exactly one of",
        ),
        (
            served(lambda c: c["servers"]["tiny"].update(port=1)),
            r"^servers.tiny.port: unknown key \(allowed: api_key_env, max_in",
        ),
        (
            served(lambda c: c["servers"]["tiny"].update(retries=-1)),
            r"^servers.tiny.retries: -1 is less than the minimum of 0",
        ),
        (
            served(lambda c: c["models"]["tiny"].update(url="http://a:1")),
            r"^models.tiny.url: unknown key \(allowed: .*\); a server's location goes under servers.tiny.url",
        ),
        (
            served(lambda c: c["models"]["tiny"].pop("served_model")),
            r"^models.tiny.served_model: name the model the server",
        ),
        (served(lambda c: c["prms"]["tiny-judge"].update(type="rlhflow")), r"^prms.tiny-judge.path: missing"),
        (
            served(lambda c: c["prms"].update(tiny={"type": "server", "served_model": "t"})),
            r"^servers.tiny: names both a served model and a served PRM",
        ),
    ],
)
def test_bad_config_names_the_key(edit, message: str) -> None:
    config = smoke()
    edit(config)
    with pytest.raises(ConfigError, match=message):
        check_config(config, SCHEMA)


def test_baseline_sampling_defaults_to_the_first_sampling_listed() -> None:
    config = smoke()
    assert check_config(config, SCHEMA).baseline_sampling == "t1.0"
    config["evaluation"]["baseline_sampling"] = "mix"
    assert check_config(config, SCHEMA).baseline_sampling == "mix"


def test_model_path_checks_accept_hub_names_and_model_folders(tmp_path: Path) -> None:
    config = smoke()
    config["models"]["hub"] = {"path": "Qwen/Qwen2.5-1.5B-Instruct"}
    (tmp_path / "m").mkdir()
    config["models"]["folder"] = {"path": str(tmp_path / "m")}
    with pytest.raises(ConfigError, match="is a folder but not a model folder"):
        check_config(copy.deepcopy(config), SCHEMA)
    (tmp_path / "m" / "config.json").write_text("{}")
    assert {r.model for r in check_config(config, SCHEMA).runs} == {"tiny", "hub", "folder"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_is_valid(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    grid = check_config(config, SCHEMA)
    assert grid.runs


def test_server_locations_stay_out_of_the_jobs_settings() -> None:
    grid = check_config(served_smoke(), SCHEMA)
    assert grid.servers["tiny"].url == "http://node1:8000" and grid.servers["tiny-judge"].wait == 0
    job = to_json(grid.run("tiny", "dvts.tiny-judge", "mix", 0).job)
    assert '"served_model":"tiny"' in job and '"served_model":"tiny-judge"' in job
    assert not any(key in job for key in ("node1", "services/", "timeout", "retries", "max_in_flight"))
    moved = served_smoke()
    moved["servers"]["tiny"] = {"service_file": "elsewhere.json", "timeout": 5, "retries": 0, "api_key_env": "KEY"}
    assert to_json(check_config(moved, SCHEMA).run("tiny", "bon", "mix", 0).job) == to_json(
        grid.run("tiny", "bon", "mix", 0).job
    )


def test_served_config_is_the_embedded_default_behind_servers() -> None:
    """config/served.yaml must not drift from config/config.yaml: same grid, same model settings."""
    default, served = (yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text()) for name in ("config", "served"))
    assert set(served) == set(default) | {"servers"}
    assert {k: v for k, v in served.items() if k not in ("dataset", "models", "prms", "servers")} == {
        k: v for k, v in default.items() if k not in ("dataset", "models", "prms")
    }
    assert {**served["dataset"], "name": default["dataset"]["name"]} == default["dataset"]
    (name, model), judge = next(iter(default["models"].items())), next(iter(default["prms"]))
    client = {k: v for k, v in served["models"][name].items() if k not in ("backend", "served_model")}
    assert client == {k: v for k, v in model.items() if k not in ("backend", "batch_size")}
    assert served["models"][name]["served_model"] == name and served["prms"] == {
        judge: {"type": "server", "served_model": judge}
    }
    assert set(served["servers"]) == {name, judge}
    grid = check_config(served, SCHEMA)
    assert len(grid.runs) == len(check_config(default, SCHEMA).runs)


def test_the_served_slurm_profile_is_the_slurm_profile_without_gpus_for_clients() -> None:
    slurm, served = (
        yaml.safe_load((REPO / "profiles" / name / "config.yaml").read_text()) for name in ("slurm", "slurm-served")
    )
    clients = ("generate", "score", "label_sample", "label_steps")
    assert {k: v for k, v in served.items() if k not in ("set-resources", "set-threads")} == {
        k: v for k, v in slurm.items() if k not in ("set-resources", "set-threads")
    }
    for block in ("set-resources", "set-threads"):
        assert {r: v for r, v in served[block].items() if r not in clients} == slurm[block]
    # profiles/slurm leaves the clients to the config (sal_core.resources); slurm-served sets them GPU-less
    assert all(rule not in slurm["set-resources"] and served["set-resources"][rule]["gpu"] == 0 for rule in clients)


def test_a_model_can_bring_its_own_prms() -> None:
    """search-and-learn pairs AceMath-7B with Qwen2.5-Math-PRM-7B and its other models with RLHFlow's:
    `models.<m>.search_prm` / `score_prms` give one model its own guide and judges; an approach's
    own `prm` still wins."""
    config = smoke()
    config["prms"]["other"] = dict(config["prms"]["tiny-judge"])
    config["models"]["own"] = {**config["models"]["tiny"], "search_prm": "other", "score_prms": ["other"]}
    config["approaches"]["dvts-fixed"] = {**config["approaches"]["dvts"], "prm": "tiny-judge"}
    grid = check_config(config, SCHEMA)
    assert "models" in config and "search_prm" in config["models"]["own"], "the config itself is not changed"
    runs = {(r.model, r.approach, r.n): r for r in grid.runs if r.sampling == "t1.0"}
    assert runs["own", "dvts", 4].run_id == "dvts.other" and runs["own", "dvts", 4].job.prm.name == "other"
    assert runs["tiny", "dvts", 4].run_id == "dvts.tiny-judge"
    assert runs["own", "beam", 2].run_id == "beam-n2.other"
    assert runs["own", "dvts-fixed", 4].search_prm == "tiny-judge"
    assert runs["own", "bon", 4].score_prms == ("other",)
    assert runs["tiny", "bon", 4].score_prms == ("tiny-judge",)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"search_prm": "nope"}, r"^models.tiny.search_prm: 'nope' is not a PRM defined under prms"),
        ({"score_prms": ["nope"]}, r"^models.tiny.score_prms: 'nope' is not a PRM defined under prms"),
        ({"score_prms": []}, r"^models.tiny.score_prms: \[\] should be non-empty"),
    ],
)
def test_bad_model_prms_name_the_key(entry, message: str) -> None:
    config = smoke()
    config["models"]["tiny"].update(entry)
    with pytest.raises(ConfigError, match=message):
        check_config(config, SCHEMA)
