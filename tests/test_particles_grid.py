"""Particle filtering in the grid (issue 20): its settings, one clear line per bad value before any job
runs, one run per n as beam search, and settings that stay out of a job's identity at their defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sal_core.errors import ConfigError
from sal_core.settings.build import to_json
from sal_core.settings.check import check_config
from sal_core.settings.jobs import (
    IDENTITY_DEFAULTS,
    PARTICLE_KEYS,
    PARTICLE_RULES,
    RESAMPLINGS,
    SELECTIONS,
    GenerateJob,
    SearchSettings,
)

REPO = Path(__file__).resolve().parent.parent
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
APPROACH = yaml.safe_load(SCHEMA.read_text())["$defs"]["approach"]["properties"]


def smoke(**particles) -> dict:
    """The smoke config with a particle filtering approach (settings `particles` added to it)."""
    config = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    entry = {"method": "particle_filtering", "n": [2, 4], "num_iterations": 2, "max_tokens": 12}
    config["approaches"]["pf"] = {**entry, **particles}
    return config


def test_particle_filtering_runs_once_per_n_like_beam_search() -> None:
    grid = check_config(smoke(), SCHEMA)
    runs = {r.run_id: r for r in grid.runs if r.method == "particle_filtering" and r.sampling == "t1.0"}
    assert sorted(runs) == ["pf-n2.tiny-judge", "pf-n4.tiny-judge"]
    assert [runs[k].n for k in sorted(runs)] == [2, 4]
    assert all(r.job.prm.name == "tiny-judge" and r.job.search.guided for r in runs.values())


def test_the_cpu_comparison_runs_every_method_at_equal_n() -> None:
    config = yaml.safe_load((REPO / "config" / "experiments" / "particles_cpu.yaml").read_text())
    grid = check_config(config, SCHEMA)
    by_method: dict[str, set[int]] = {}
    for run in grid.runs:
        by_method.setdefault(run.method, set()).add(run.n)
    # Best-of-N and DVTS run once at 8 (evaluated at 2 and 4 too); the others once per n
    assert by_method == {"best_of_n": {8}, "beam_search": {2, 4, 8}, "dvts": {8}, "particle_filtering": {2, 4, 8}}
    assert config["dataset"] == {**config["dataset"], "source": "builtin", "path": "arith_heldout", "limit": 60}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"n": [6], "sweeps": 4}, r"approaches\.pf\.sweeps: n 6 does not split into 4 sweeps"),
        ({"n": [4], "sweeps": 2, "reference_particles": 3}, r"approaches\.pf\.reference_particles: 3 is more than"),
        ({"n": [4], "sweeps": 2, "reference_particles": 2}, r"approaches\.pf\.reference_particles: 2 leaves no"),
        ({"weight_temperature": 0}, r"approaches\.pf\.weight_temperature"),
        ({"selection": "best"}, r"approaches\.pf\.selection"),
        ({"resampling": "stratified"}, r"approaches\.pf\.resampling"),
        ({"filter_duplicates": True}, r"approaches\.pf\.filter_duplicates: does not apply to particle_filtering"),
        ({"keep_unfinished": True}, r"approaches\.pf\.keep_unfinished: does not apply to particle_filtering"),
        ({"sort_completed": True}, r"approaches\.pf\.sort_completed: does not apply to particle_filtering"),
        ({"beam_width": 2}, r"approaches\.pf\.beam_width: does not apply to particle_filtering"),
        ({"stop": ["x"]}, r"approaches\.pf\.stop: "),
    ],
)
def test_bad_particle_settings_name_the_key(settings: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_config(smoke(**settings), SCHEMA)


def test_a_weight_temperature_at_or_below_zero_is_refused_by_the_settings_too() -> None:
    """Jobs given as JSON (sal generate --job) skip the schema: the settings say the same."""
    base = {"method": "particle_filtering", "n": 4}
    for bad in (0.0, -1.0):
        with pytest.raises(ConfigError, match=r"^search\.weight_temperature: must be > 0"):
            SearchSettings.from_dict({**base, "weight_temperature": bad})
    with pytest.raises(ConfigError, match=r"^search\.reference_particles: 5 is more than the 4 particles"):
        SearchSettings.from_dict({**base, "reference_particles": 5})


@pytest.mark.parametrize("key", PARTICLE_KEYS)
def test_particle_keys_are_refused_for_other_methods(key: str) -> None:
    value = {"sweeps": 2, "reference_particles": 0, "selection": "sample", "resampling": "systematic"}.get(key, 0.5)
    config = smoke()
    config["approaches"]["beam"][key] = value
    with pytest.raises(ConfigError, match=rf"^approaches\.beam\.{key}: for particle_filtering only"):
        check_config(config, SCHEMA)


def test_particle_filtering_without_a_prm_is_refused_before_any_job() -> None:
    config = smoke()
    config.pop("search_prm")
    config["approaches"] = {"pf": config["approaches"]["pf"]}
    with pytest.raises(ConfigError, match=r"approaches\.pf\.prm: particle_filtering needs a PRM"):
        check_config(config, SCHEMA)
    model = {"name": "m", "path": "resources/models/tiny-random"}
    with pytest.raises(ConfigError, match=r"search\.method particle_filtering needs a PRM"):
        GenerateJob.from_dict({"model": model, "search": {"method": "particle_filtering", "n": 4}})


def test_new_keys_stay_out_of_a_jobs_identity_at_their_defaults() -> None:
    """Upgrading reruns nothing: no job of a grid without particle settings gains a key; a particle job
    names a key only once it leaves its default."""
    grid = check_config(smoke(), SCHEMA)
    for run in grid.runs:
        job = to_json(run.job)
        assert not any(f'"{key}"' in job for key in IDENTITY_DEFAULTS), run.run_id
    changed = check_config(smoke(sweeps=2, reference_particles=0, weight_temperature=0.5), SCHEMA)
    job = to_json(next(r for r in changed.runs if r.run_id == "pf-n4.tiny-judge").job)
    assert '"sweeps":2' in job and '"reference_particles":0' in job and '"weight_temperature":0.5' in job
    assert '"selection"' not in job and '"resampling"' not in job


def test_particle_jobs_name_their_rules_so_jobs_run_under_older_rules_rerun() -> None:
    """Issue 27 changed particle filtering's request seeds and step-limit finish reason: every particle
    job's JSON names PARTICLE_RULES (a finished one, whose params lack it, reruns); no other job's does."""
    grid = check_config(smoke(), SCHEMA)
    jobs = {run.run_id: to_json(run.job) for run in grid.runs}
    assert any(run.method == "particle_filtering" for run in grid.runs)
    for run in grid.runs:
        assert (f'"particle_rules":{PARTICLE_RULES}' in jobs[run.run_id]) == (run.method == "particle_filtering")
    particle = next(run.job for run in grid.runs if run.method == "particle_filtering")
    assert GenerateJob.from_dict(json.loads(to_json(particle))) == particle
    older = json.loads(to_json(particle.search)) | {"particle_rules": PARTICLE_RULES - 1}
    with pytest.raises(ConfigError, match=r"^search\.particle_rules: 1; only 2 runs here$"):
        SearchSettings.from_dict(older)


def test_the_schema_lists_the_settings_values() -> None:
    assert APPROACH["selection"]["enum"] == list(SELECTIONS)
    assert APPROACH["resampling"]["enum"] == list(RESAMPLINGS)
    for key in PARTICLE_KEYS:
        assert APPROACH[key]["default"] == IDENTITY_DEFAULTS[key], key
