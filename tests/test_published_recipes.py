"""Every experiment config carries search-and-learn's published settings (sal_core/settings/published.py,
shown in docs/recipes.md): its recipe values everywhere, its MATH-500 grid values in math500.yaml; and
search-and-learn's Llama template renders as its `custom_chat_template` does, with exactly one BOS."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from tiny_tokenizers import word_tokenizer

from sal_core.backends.tokens import prompt_token_ids
from sal_core.search.prompts import SAL_LLAMA3, build_prompt
from sal_core.settings import published
from sal_core.settings.check import check_config
from sal_core.settings.grid import Grid

REPO = Path(__file__).resolve().parent.parent
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
EXPERIMENTS = sorted((REPO / "config" / "experiments").glob("*.yaml"))


def _trains_a_prm(path: Path) -> bool:
    return any("train" in prm for prm in (yaml.safe_load(path.read_text()).get("prms") or {}).values())


def _cpu_only(path: Path) -> bool:
    """Every model built on the spot (`prepare:`, SmolLM2 from its wheel): a CPU experiment of this
    project's own (vllm_vs_transformers.yaml), not a published recipe."""
    models = (yaml.safe_load(path.read_text()).get("models") or {}).values()
    return bool(models) and all("prepare" in model for model in models)


# Configs of the learn loop (learn_cpu.yaml, prm_qwen_math.yaml) search with the PRM they train, and
# learn_cpu.yaml with SmolLM2: their models and judges are theirs, not search-and-learn's search recipes
# (prm_qwen_math.yaml's training recipe is checked in tests/test_config_learn.py); CPU-only comparisons
# of the engines are the project's own too.
SEARCH_EXPERIMENTS = [path for path in EXPERIMENTS if not _trains_a_prm(path) and not _cpu_only(path)]


def _grid(path: Path) -> tuple[dict, Grid]:
    config = yaml.safe_load(path.read_text())
    return config, check_config(config, SCHEMA)


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_every_search_setting_agrees_with_the_published_recipe(path: Path) -> None:
    _, grid = _grid(path)
    for run in grid.runs:
        search = run.job.search
        in_grid = path.name == published.GRID_FILES[run.method]
        for value in published.SEARCH[run.method]:
            if value.scope == published.RECIPE or in_grid:
                got = run.n if value.key == "n" else getattr(search, value.key)
                departure = published.search_departure(path.name, run.method, value.key)
                want = departure.ours if departure else value.value
                ok = got in want if isinstance(want, list) and value.key == "n" else got == want
                assert ok, f"{path.name}: {run.run_id} {value.key} = {got!r}, published {want!r} ({value.source})"
        if in_grid:
            for value in published.SAMPLING:
                assert getattr(search, value.key) == value.value, f"{run.sampling}: {value.key} ({value.source})"


@pytest.mark.parametrize("path", SEARCH_EXPERIMENTS, ids=lambda p: p.name)
def test_every_model_is_prompted_and_judged_as_published(path: Path) -> None:
    _, grid = _grid(path)
    for name, model in grid.models.items():
        recipe = published.MODELS.get(model.path)
        assert recipe is not None, f"{path.name}: models.{name}: {model.path} has no published recipe"
        assert model.chat_template == recipe.chat_template, f"{path.name}: models.{name}.chat_template"
        if recipe.prm is None:
            continue
        departed = [d for d in published.DEPARTURES if (d.experiment, d.key) == (path.name, f"PRM of {model.path}")]
        want = departed[0].ours if departed else recipe.prm
        for run in (r for r in grid.runs if r.model == name):
            if run.search_prm is not None:
                assert grid.prms[run.search_prm].path == want, f"{path.name}: {name} {run.run_id} guide"
            assert want in {grid.prms[p].path for p in run.score_prms}, f"{path.name}: {name} judges"
    for name, prm in grid.prms.items():
        recipe = published.PRMS[prm.path]
        assert (prm.type, prm.step_layout) == (recipe.type, recipe.step_layout), f"{path.name}: prms.{name}"
        if recipe.batch_size is not None:
            assert prm.batch_size == recipe.batch_size, f"{path.name}: prms.{name}.batch_size ({recipe.source})"


def test_the_math500_grid_is_the_published_grid() -> None:
    config, grid = _grid(REPO / "config" / "experiments" / published.GRID_FILES["best_of_n"])
    in_grid = {p for p, recipe in published.MODELS.items() if recipe.in_grid}
    assert {model.path for model in grid.models.values()} == in_grid
    assert sorted({r.seed for r in grid.runs}) == published.SEEDS.value
    assert config["dataset"]["path"] == published.DATASET.value
    assert {r.method for r in grid.runs} == set(published.SAL_METHODS)


def test_the_particle_grid_is_the_papers_setting() -> None:
    """math500_particles.yaml: the paper's policy and PRM on MATH-500, every budget, particle filtering only."""
    config, grid = _grid(REPO / "config" / "experiments" / published.GRID_FILES["particle_filtering"])
    assert {model.path for model in grid.models.values()} == {"Qwen/Qwen2.5-Math-1.5B-Instruct"}
    assert {grid.prms[r.search_prm].path for r in grid.runs} == {published.QWEN_PRM}
    assert {r.method for r in grid.runs} == {"particle_filtering"}
    assert sorted(r.n for r in grid.runs if r.seed == 0) == published.SEARCH["particle_filtering"][0].value
    assert config["dataset"]["path"] == published.DATASET.value


def test_departures_name_real_search_keys() -> None:
    """A departure from a search value names a method and key that the published recipe has."""
    for d in published.DEPARTURES:
        if "." in d.key and not d.key.startswith("PRM of"):
            method, key = d.key.split(".", 1)
            values = {v.key: v.value for v in published.SEARCH[method]}
            assert values.get(key) == d.published, d


def test_hnc_recipe_facts_and_the_sweeps_departures() -> None:
    """HNC's Qwen2.5-3B runs are guided by its Config default PRM (no recipe sets one), at 4095 tokens;
    hot_cold_sweep.yaml's documented departures are what the sweep really does."""
    assert published.MODELS["Qwen/Qwen2.5-3B-Instruct"].prm == published.SKYWORK_1_5B
    assert {v.key: v.value for v in published.HNC_VALUES}["max_tokens"] == 4095
    _, grid = _grid(REPO / "config" / "experiments" / published.SWEEP)
    by_key = {d.key: d.ours for d in published.DEPARTURES if d.experiment == published.SWEEP}
    qwen3b = [r for r in grid.runs if grid.models[r.model].path == "Qwen/Qwen2.5-3B-Instruct"]
    assert qwen3b and {grid.prms[r.search_prm].path for r in qwen3b if r.search_prm} == {
        by_key["PRM of " + "Qwen/Qwen2.5-3B-Instruct"]
    }
    assert {r.job.search.max_tokens for r in grid.runs} == {by_key["max_tokens"]}
    assert {r.n for r in grid.runs} == {by_key["n"]}
    assert {len(r.job.search.temperatures) for r in grid.runs} == {1}


def test_docs_show_the_published_tables() -> None:
    assert published.markdown_tables() in (REPO / "docs" / "recipes.md").read_text()


def test_sal_llama3_renders_search_and_learns_template_with_one_bos() -> None:
    """The string search-and-learn's `custom_chat_template` renders for a system and a user message
    (src/sal/config.py:51, its date pinned), and the engines' ids start with exactly one BOS."""
    tokenizer = word_tokenizer("renders-bos")
    prompt = build_prompt(tokenizer, "What is 2 + 3 ?", "  Solve it\n", SAL_LLAMA3)
    assert prompt == (
        "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
        "Today Date: 26 Jul 2024\n\nSolve it<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2 + 3 ?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    # without a system prompt the system block is still rendered, empty, as search-and-learn does
    assert build_prompt(tokenizer, "Q", "", SAL_LLAMA3).startswith(
        "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
        "Today Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user"
    )
    ids = prompt_token_ids(tokenizer, prompt + "Step 1 :")
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
