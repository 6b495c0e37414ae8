"""The published search-and-learn MATH-500 recipe as data: every value its runs used, with its source.

Sources are files of huggingface/search-and-learn at commit 6f81cac (`SAL`), for the one model it
does not run, BooMinSeong/hotncold at 7f943c9 (`HNC`), and for particle filtering the paper (Puri et al.
2025, `PF`) and its code, its_hub (`ITS`). config/experiments/*.yaml must agree with
these values (tests/test_published_recipes.py): RECIPE values in every experiment (they define how a
model is prompted and judged and how the search behaves), GRID values in the MATH-500 grid
(config/experiments/math500.yaml), which other experiments change on purpose (their n, token limits,
temperatures, seeds). docs/recipes.md shows `markdown_tables()`, which the same test keeps in sync.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SAL = "SAL"
HNC = "HNC"
#: Red-Hat-AI-Innovation-Team/its_hub: the 1.2.0 wheel on PyPI (its_hub/core/algorithms/particle_gibbs.py)
#: and scripts/benchmark.py at 13dee14, the paper's code (Puri et al. 2025, arXiv 2502.01618: `PF`)
ITS = "ITS"
PF = "PF"
#: checked in every experiment config
RECIPE = "recipe"
#: checked in the MATH-500 grid only
GRID = "grid"

RLHFLOW = "RLHFlow/Llama3.1-8B-PRM-Deepseek-Data"
QWEN_PRM = "Qwen/Qwen2.5-Math-PRM-7B"
SKYWORK_1_5B = "Skywork/Skywork-o1-Open-PRM-Qwen-2.5-1.5B"


@dataclass(frozen=True)
class Value:
    """One published setting: our config key for it, its value, where it comes from, and its scope."""

    key: str
    value: Any
    source: str
    scope: str = RECIPE


#: per search method: `approaches.<name>.<key>` (and the sampling keys temperatures / top_p)
SEARCH: dict[str, list[Value]] = {
    "best_of_n": [
        Value("n", 256, f"{SAL} recipes/README.md:111,118-121", GRID),
        Value("max_tokens", 2048, f"{SAL} src/sal/config.py:59", GRID),
        Value("aggregation", "last", f"{SAL} src/sal/config.py:60"),
    ],
    "beam_search": [
        Value("n", [4, 16, 64, 256], f"{SAL} recipes/README.md:128-141", GRID),
        Value("max_tokens", 2048, f"{SAL} src/sal/config.py:59", GRID),
        Value("num_iterations", 40, f"{SAL} src/sal/config.py:64", GRID),
        Value("beam_width", 4, f"{SAL} src/sal/config.py:63"),
        Value("lookahead", 0, f"{SAL} src/sal/config.py:65"),
        Value("filter_duplicates", True, f"{SAL} recipes/*/beam_search.yaml (e.g. Llama-3.2-1B-Instruct:3)"),
        Value("sort_completed", False, f"{SAL} src/sal/config.py:69 (read only by beam_search.py:177)"),
        Value("aggregation", "last", f"{SAL} src/sal/config.py:60"),
        Value("stop_at_boxed", None, f"{SAL} src/sal/search/beam_search.py:125-131 (no boxed rule)"),
    ],
    "dvts": [
        Value("n", 256, f"{SAL} recipes/README.md:111,152-155", GRID),
        Value("max_tokens", 2048, f"{SAL} src/sal/search/diverse_verifier_tree_search.py:36,74", GRID),
        Value("num_iterations", 40, f"{SAL} src/sal/config.py:64", GRID),
        Value("beam_width", 4, f"{SAL} src/sal/config.py:63"),
        Value("lookahead", 0, f"{SAL} src/sal/config.py:65"),
        Value("aggregation", "last", f"{SAL} src/sal/config.py:60"),
        Value("stop_at_boxed", None, f"{SAL} src/sal/search/diverse_verifier_tree_search.py:134-137"),
        Value("keep_unfinished", True, f"{SAL} src/sal/search/diverse_verifier_tree_search.py:139-157"),
    ],
    # the paper's particle filtering, as its_hub runs it on MATH-500 (its grid: math500_particles.yaml)
    "particle_filtering": [
        Value(
            "n",
            [1, 2, 4, 8, 16, 32, 64, 128],
            f"{PF} MATH-500 scaling figures (budgets 1 to 128, read off the figures' axes: not a list the "
            f"text states; confirm before citing); {ITS} scripts/benchmark.py --budgets",
            GRID,
        ),
        Value(
            "num_iterations",
            51,
            f"{ITS} scripts/benchmark.py init_algorithm (StepGeneration max_steps=50: a particle stops after "
            f"max_steps + 1 steps, step_generation.py; docs/search.md, Differences from its_hub)",
            GRID,
        ),
        Value(
            "max_tokens", 2048, f"{SAL} src/sal/config.py:59 ({ITS} benchmark.py's --max_tokens has no default)", GRID
        ),
        Value("sweeps", 1, f"{ITS} particle_gibbs.py:503-525 (ParticleFiltering: ParticleGibbs with num_iterations=1)"),
        Value("selection", "argmax", f"{ITS} particle_gibbs.py:512"),
        Value("resampling", "multinomial", f"{ITS} particle_gibbs.py:513"),
        Value("weight_temperature", 1.0, f"{ITS} particle_gibbs.py:66-76 (softmax of the inverse-sigmoid rewards)"),
        Value("lookahead", 0, f"{ITS} particle_gibbs.py:441-444 (lookahead modulation not implemented)"),
        Value("stop_at_boxed", True, f"{ITS} scripts/benchmark.py init_algorithm (stop_token='\\boxed')"),
        Value(
            "aggregation", "last", f"{ITS} scripts/benchmark.py --rm_agg_method model (the PRM's score of the prefix)"
        ),
    ],
}
#: the methods of search-and-learn's MATH-500 grid (math500.yaml); particle filtering has its own file
SAL_METHODS = ("best_of_n", "beam_search", "dvts")
#: the MATH-500 grid file of each method's paper
GRID_FILES = {**dict.fromkeys(SAL_METHODS, "math500.yaml"), "particle_filtering": "math500_particles.yaml"}

#: every method's sampling (`samplings.<name>`) and the seeds
SAMPLING = [
    Value("temperatures", [0.8], f"{SAL} src/sal/config.py:54", GRID),
    Value("top_p", 1.0, f"{SAL} src/sal/config.py:55", GRID),
]
SEEDS = Value("seeds", [0, 1, 2, 3, 4], f"{SAL} recipes/README.md:106,115", GRID)
DATASET = Value("dataset.path", "HuggingFaceH4/MATH-500", f"{SAL} src/sal/config.py:42-44", GRID)


@dataclass(frozen=True)
class ModelRecipe:
    """How a policy model is prompted and which PRM guides and scores it (None: not published)."""

    chat_template: str | None
    prm: str | None
    source: str
    #: in search-and-learn's MATH-500 grid (hotncold's additions are not)
    in_grid: bool = True


MODELS: dict[str, ModelRecipe] = {
    "meta-llama/Llama-3.2-1B-Instruct": ModelRecipe(
        "sal-llama3", RLHFLOW, f"{SAL} src/sal/config.py:27,31,51; recipes/Llama-3.2-1B-Instruct/*.yaml"
    ),
    "meta-llama/Llama-3.2-3B-Instruct": ModelRecipe(
        "sal-llama3", RLHFLOW, f"{SAL} src/sal/config.py:31,51; recipes/Llama-3.2-3B-Instruct/*.yaml:3"
    ),
    "Qwen/Qwen2.5-Math-1.5B-Instruct": ModelRecipe(
        None,
        QWEN_PRM,
        f"{PF} Section 5 (Qwen2.5-Math-1.5B-Instruct guided by Qwen2.5-Math-PRM-7B); {ITS} scripts/benchmark.py",
        in_grid=False,
    ),
    "Qwen/Qwen2.5-1.5B-Instruct": ModelRecipe(
        None, RLHFLOW, f"{SAL} src/sal/config.py:31; recipes/Qwen2.5-1.5B-Instruct/*.yaml:3-4"
    ),
    "nvidia/AceMath-7B-Instruct": ModelRecipe(None, QWEN_PRM, f"{SAL} recipes/AceMath-7B-Instruct/*.yaml:3-5"),
    # HNC's recipes name no PRM, so its Config default applies, which launch_array.slurm also exports
    "Qwen/Qwen2.5-3B-Instruct": ModelRecipe(
        None,
        SKYWORK_1_5B,
        f"{HNC} recipes/Qwen2.5-3B-Instruct/*.yaml:3-4; src/sal/config.py:31; recipes/launch_array.slurm:52,62",
        in_grid=False,
    ),
}

#: HNC's other defaults for its runs (none of them in SAL's grid)
HNC_VALUES = [
    Value("max_tokens", 4095, f"{HNC} src/sal/config.py:62"),
    Value("max_model_len", 4096, f"{HNC} src/sal/config.py:63"),
    Value("temperatures", [0.4, 0.8, 1.2, 1.6], f"{HNC} recipes/launch_array.slurm:55-56 (ratios 0.25 each)"),
    Value("seeds", [42], f"{HNC} recipes/Qwen2.5-3B-Instruct/*.yaml (seed: 42)"),
]


@dataclass(frozen=True)
class Departure:
    """A setting of an experiment that knowingly differs from the recipe it follows: `models.<model>` or
    `approaches` key, the published value, the experiment's, and why."""

    experiment: str
    key: str
    published: Any
    ours: Any
    source: str
    why: str


SWEEP = "hot_cold_sweep.yaml"
PARTICLES_CPU = "particles_cpu.yaml"
#: what config/experiments/hot_cold_sweep.yaml (and aime24.yaml, for its PRM) does differently from HNC's
#: Qwen2.5-3B runs
DEPARTURES = [
    Departure(
        "aime24.yaml",
        "PRM of Qwen/Qwen2.5-3B-Instruct",
        SKYWORK_1_5B,
        RLHFLOW,
        f"{HNC} src/sal/config.py:31",
        "one PRM guides and judges every Qwen2.5 and Llama model, as in SAL's grid",
    ),
    Departure(
        SWEEP,
        "PRM of Qwen/Qwen2.5-3B-Instruct",
        SKYWORK_1_5B,
        RLHFLOW,
        f"{HNC} src/sal/config.py:31",
        "one PRM guides and judges every model, as in SAL's grid, so temperatures and models compare on one scale",
    ),
    Departure(
        SWEEP,
        "max_tokens",
        4095,
        2048,
        f"{HNC} src/sal/config.py:62; {SAL} src/sal/config.py:59",
        "SAL's value, which SAL's DVTS always uses (diverse_verifier_tree_search.py:36,74); 2048 matches every method",
    ),
    Departure(
        SWEEP,
        "temperatures",
        "0.4, 0.8, 1.2, 1.6 mixed (ratios 0.25)",
        "one temperature per sampling, 0.1 ... 1.2",
        f"{HNC} recipes/launch_array.slurm:55-56",
        "the sweep measures each temperature alone first; a mix is one more `samplings` entry (hot-cold)",
    ),
    Departure(
        SWEEP,
        "n",
        "best_of_n 256, beam_search and dvts 64",
        64,
        f"{HNC} recipes/Qwen2.5-3B-Instruct/*.yaml:6-7",
        "12 temperatures x 6 seeds x 5 models: one n keeps the grid's cost bounded; Best-of-N at 64 is subsampled",
    ),
    Departure(
        PARTICLES_CPU,
        "beam_search.beam_width",
        4,
        2,
        f"{SAL} src/sal/config.py:63",
        "every method at n = 2, 4, 8: beam search at n = 2 is one beam of width 2",
    ),
    Departure(
        PARTICLES_CPU,
        "dvts.beam_width",
        4,
        2,
        f"{SAL} src/sal/config.py:63",
        "DVTS evaluated at n = 2, 4, 8: budgets of 1, 2, 4 subtrees of width 2",
    ),
]


def search_departure(experiment: str, method: str, key: str) -> Departure | None:
    """The departure of `experiment` from its method's published `key`, if it has one."""
    return next((d for d in DEPARTURES if (d.experiment, d.key) == (experiment, f"{method}.{key}")), None)


@dataclass(frozen=True)
class PRMRecipe:
    """How search-and-learn runs a PRM: our type, its batch size (None: all completions of one
    problem per batch; batch sizes never change our scores), and its input layout."""

    type: str
    batch_size: int | None
    step_layout: str
    source: str


PRMS: dict[str, PRMRecipe] = {
    RLHFLOW: PRMRecipe("rlhflow", 8, "sal", f"{SAL} src/sal/models/reward_models.py:169,229"),
    QWEN_PRM: PRMRecipe("qwen2.5-math", None, "sal", f"{SAL} src/sal/models/reward_models.py:352-376"),
    "peiyi9979/math-shepherd-mistral-7b-prm": PRMRecipe(
        "math-shepherd", 4, "sal", f"{SAL} src/sal/config.py:56; src/sal/models/reward_models.py:110-123"
    ),
    "Skywork/Skywork-o1-Open-PRM-Qwen-2.5-1.5B": PRMRecipe(
        "skywork", None, "sal", f"{SAL} src/sal/models/reward_models.py:304-325"
    ),
    "Skywork/Skywork-o1-Open-PRM-Qwen-2.5-7B": PRMRecipe(
        "skywork", None, "sal", f"{SAL} src/sal/models/reward_models.py:304-325"
    ),
}


def _cell(value: Any) -> str:
    return "`null`" if value is None else f"`{value}`".replace("True", "true").replace("False", "false")


def markdown_tables() -> str:
    """The published values as the markdown tables of docs/recipes.md."""
    lines = ["| method | key | value | scope | source |", "|---|---|---|---|---|"]
    for method, values in SEARCH.items():
        lines += [f"| {method} | `{v.key}` | {_cell(v.value)} | {v.scope} | {v.source} |" for v in values]
    for v in (*SAMPLING, SEEDS, DATASET):
        lines.append(f"| all | `{v.key}` | {_cell(v.value)} | {v.scope} | {v.source} |")
    lines += ["", "| model | `chat_template` | guiding and scoring PRM | source |", "|---|---|---|---|"]
    for path, model in MODELS.items():
        lines.append(f"| `{path}` | {_cell(model.chat_template)} | {_cell(model.prm)} | {model.source} |")
    lines += ["", "| PRM | `type` | `batch_size` | `step_layout` | source |", "|---|---|---|---|---|"]
    for path, prm in PRMS.items():
        batch = _cell(prm.batch_size) if prm.batch_size else "one problem's completions"
        lines.append(f"| `{path}` | `{prm.type}` | {batch} | `{prm.step_layout}` | {prm.source} |")
    lines += ["", "| HNC default | value | source |", "|---|---|---|"]
    lines += [f"| `{v.key}` | {_cell(v.value)} | {v.source} |" for v in HNC_VALUES]
    lines += ["", "| experiment | setting | published | ours | why | source |", "|---|---|---|---|---|---|"]
    for d in DEPARTURES:
        lines.append(f"| `{d.experiment}` | {d.key} | {_cell(d.published)} | {_cell(d.ours)} | {d.why} | {d.source} |")
    return "\n".join(lines) + "\n"
