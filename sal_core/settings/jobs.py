"""Resolved settings of one job, validated before any model is loaded.

The workflow turns the user's config into these objects at DAG-build time (so a bad value stops
the run before any job starts), and passes them to `sal generate` / `sal score` as JSON.
Every error names the config key it comes from.
"""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from sal_core.constants import (
    AGGREGATIONS,
    BACKENDS,
    CONTINUATIONS,
    DTYPES,
    GUIDED_METHODS,
    METHODS,
    PARTICLE_FILTERING,
    PRM_TYPES,
    SERVER_APIS,
    STEP_LAYOUTS,
)
from sal_core.errors import ConfigError
from sal_core.settings.build import Settings, require_at_least, require_one_of
from sal_core.settings.endpoint import ServedSettings

DEFAULT_SYSTEM_PROMPT = (
    "Solve the following math problem efficiently and clearly:\n\n"
    "- For simple problems (2 steps or fewer):\nProvide a concise solution with minimal explanation.\n\n"
    "- For complex problems (3 steps or more):\nUse this step-by-step format:\n\n"
    "## Step 1: [Concise description]\n[Brief explanation and calculations]\n\n"
    "## Step 2: [Concise description]\n[Brief explanation and calculations]\n\n...\n\n"
    "Regardless of the approach, always conclude with:\n\n"
    "Therefore, the final answer is: $\\boxed{answer}$. I hope it is correct.\n\n"
    "Where [answer] is just the final number or expression that solves the problem."
)


@dataclass
class ModelSettings(ServedSettings, Settings):
    """A policy (generator) model and how to run it. With `backend: openai`, `path` is where the
    tokenizer comes from (prompts are sent as token ids), `served_model` what the server must serve, and
    the config's `servers:` block where it is (settings.endpoint)."""

    KEY = "model"
    OPTIONAL_KEYS = ("enforce_eager",)

    name: str
    path: str
    backend: str = "transformers"
    #: None: the model's own chat template; "none": raw text, no template; "sal-llama3": search-and-learn's
    #: Llama 3 template (sal_core.search.prompts); else a Jinja template string
    chat_template: str | None = None
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_model_len: int = 4096
    dtype: str = "auto"
    device: str = "auto"
    #: transformers: sequences per forward batch
    batch_size: int = 64
    #: vllm only; None: 0.9, or what a guiding PRM loaded beside it leaves (backends.gpu_memory);
    #: on vLLM's CPU build the share of the machine's memory for the KV cache, 0.2 (backends.vllm_engine)
    gpu_memory_utilization: float | None = None
    tensor_parallel_size: int | None = None
    enable_prefix_caching: bool = True
    #: vllm only: run without compiled graphs; None: on vLLM's CPU build (seconds to start, not minutes), not on GPUs
    enforce_eager: bool | None = None

    def validate(self, where: str) -> None:
        require_one_of(self.backend, BACKENDS, f"{where}.backend")
        require_at_least(self.max_model_len, 16, f"{where}.max_model_len")
        require_at_least(self.batch_size, 1, f"{where}.batch_size")
        require_one_of(self.dtype, DTYPES, f"{where}.dtype")
        if self.gpu_memory_utilization is not None and not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError(f"{where}.gpu_memory_utilization: must be in (0, 1]")
        self.validate_served(where, "backend openai")

    @property
    def served(self) -> bool:
        return self.backend == "openai"


#: the PRM families search-and-learn scores with (src/sal/models/reward_models.py)
SAL_PRM_TYPES = ("rlhflow", "math-shepherd", "skywork", "qwen2.5-math")


@dataclass
class PRMSettings(ServedSettings, Settings):
    """A process reward model and how to run it. `type: server` scores through a server (see
    ServedSettings and `api`); `path` is then only needed by `api: vllm-pooling`, for the tokenizer."""

    KEY = "prm"
    OPTIONAL_KEYS = ("step_separator",)

    name: str
    type: str
    path: str = ""
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 8
    max_length: int = 4096
    #: what a `type: server` PRM speaks: `sal serve-prm`'s API, or vLLM's pooling API (Qwen2.5-Math-PRM)
    api: str = "sal"
    #: "default": blank-line steps, empty ones dropped, each family's model-card layout; "sal":
    #: search-and-learn's input for the family, empty steps kept (sal_core.prm.base.scored_steps)
    step_layout: str = "default"
    #: trl only: the text after each step the PRM was trained with; None: the checkpoint's
    #: prm_config.json, else TRL's "\n" with a warning (sal_core.prm.trl_token)
    step_separator: str | None = None

    def validate(self, where: str) -> None:
        require_one_of(self.type, PRM_TYPES, f"{where}.type")
        if self.step_separator is not None and (self.type != "trl" or not self.step_separator):
            raise ConfigError(f"{where}.step_separator: a non-empty string, for type trl only")
        require_one_of(self.step_layout, STEP_LAYOUTS, f"{where}.step_layout")
        if self.step_layout == "sal" and self.family not in (*SAL_PRM_TYPES, "server"):
            raise ConfigError(
                f"{where}.step_layout: search-and-learn has no {self.type} PRM; 'sal' applies to "
                f"{', '.join(SAL_PRM_TYPES)} (and to a server running one)"
            )
        remote = self.served
        self.validate_served(where, "type server")
        if self.api not in SERVER_APIS or (self.api != "sal" and not remote):
            raise ConfigError(f"{where}.api: {self.api!r} is not one of {', '.join(SERVER_APIS)} (type server only)")
        if self.type == "verifier" and self.path:
            raise ConfigError(f"{where}.path: type verifier loads no model; leave path (and prepare) out")
        if not self.path and self.type != "verifier" and (not remote or self.api == "vllm-pooling"):
            raise ConfigError(f"{where}.path: missing (the PRM's weights, or its tokenizer for api vllm-pooling)")
        require_at_least(self.batch_size, 1, f"{where}.batch_size")
        require_one_of(self.dtype, DTYPES, f"{where}.dtype")
        require_at_least(self.max_length, 1, f"{where}.max_length")

    @property
    def served(self) -> bool:
        return self.type == "server"

    @property
    def family(self) -> str:
        """The PRM family whose input layout applies: `type`, or for a server the family its API
        implies (vLLM pooling: qwen2.5-math; `sal serve-prm`: "server", known to the server only)."""
        if self.type != "server":
            return self.type
        return "qwen2.5-math" if self.api == "vllm-pooling" else "server"

    def fingerprint(self) -> str:
        """Every setting that decides scores as stable JSON: equal fingerprints score alike."""
        return json.dumps(self.identity(), sort_keys=True)


#: SearchSettings keys left out of a job's identity at these defaults (added after grids were run)
IDENTITY_DEFAULTS: dict[str, Any] = {
    "temperature_layout": "blocks",
    "sweeps": 1,
    "reference_particles": 1,
    "selection": "argmax",
    "resampling": "multinomial",
    "weight_temperature": 1.0,
    "continuation": "reencode",
}
#: particle filtering's rules, in every particle job's identity so particle jobs finished under older
#: rules rerun: 2 since issue 27 (request seeds tagged apart from the resampling draws', the step limit's
#: own finish reason `step_limit`)
PARTICLE_RULES = 2
#: search keys that particle filtering has no use for: refused there unless at their defaults
NOT_FOR_PARTICLES = (
    "beam_width",
    "filter_duplicates",
    "sort_completed",
    "keep_unfinished",
    "stop",
    "temperature_layout",
)
#: the search keys particle filtering reads besides its own
PARTICLE_SEARCH_KEYS = ("max_tokens", "num_iterations", "lookahead", "stop_at_boxed", "aggregation")
PARTICLE_KEYS = ("sweeps", "reference_particles", "selection", "resampling", "weight_temperature")
SELECTIONS = ("argmax", "sample")
RESAMPLINGS = ("multinomial", "systematic")


@dataclass
class SearchSettings(Settings):
    """One search method at one n with one temperature scheme and seed.

    Temperatures (sal_core.search.temperatures): Best-of-N splits its n samples across
    `temperatures` by `temperature_ratios` (cycled without ratios); beam search and DVTS build the
    same list over `beam_width` and give entry c to each kept beam's c-th copy / each subtree's
    c-th candidate.
    """

    KEY = "search"

    method: str
    n: int
    temperatures: list[float] = field(default_factory=lambda: [0.8])
    temperature_ratios: list[float] | None = None
    top_p: float = 1.0
    #: tokens per completion (Best-of-N) or per step (beam search, DVTS)
    max_tokens: int = 2048
    beam_width: int = 4
    num_iterations: int = 40
    lookahead: int = 0
    filter_duplicates: bool = False
    sort_completed: bool = False
    #: end a beam / subtree once its text contains "boxed{"; None: the method's search-and-learn
    #: rule (DVTS yes, beam search no)
    stop_at_boxed: bool | None = None
    #: DVTS: return every candidate of a subtree's last expansion, finished or not (search-and-learn),
    #: instead of the finished ones only
    keep_unfinished: bool = False
    #: how step scores become one beam score during search
    aggregation: str = "last"
    seed: int = 0
    #: Best-of-N: strings that end a completion, cut from its text (a few-shot prompt's "\n\nProblem:",
    #: where a small model would go on with a problem of its own and box that one's answer)
    stop: list[str] = field(default_factory=list)
    #: Best-of-N with temperature_ratios: "blocks" (hotncold's order) or "interleaved" (every first n in
    #: proportion, for first-n scoring); left out of the job's identity at "blocks"
    temperature_layout: str = "blocks"
    #: particle filtering: n splits into `sweeps` sweeps of n / sweeps particles; more than one is
    #: particle Gibbs (sal_core.search.particles)
    sweeps: int = 1
    #: particle Gibbs: the particles of one sweep carried into the next as references
    reference_particles: int = 1
    #: particle filtering: the returned answer, the highest-weight particle ("argmax") or one drawn by weight
    selection: str = "argmax"
    #: particle filtering: how particles are resampled by weight at each step
    resampling: str = "multinomial"
    #: particle filtering: the weights are softmax(score / weight_temperature)
    weight_temperature: float = 1.0
    #: step-wise methods: "reencode" (search-and-learn: prompt + text so far tokenized anew each step) or
    #: "exact" (each step continues from the ids generated so far); sal_core.search.continuation
    continuation: str = "reencode"

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str | None = None) -> Any:
        """Built as every settings object is; a job's JSON may carry its identity's `particle_rules`,
        which must be this version's (older particle rules cannot be run again)."""
        data = dict(data)
        rules = data.pop("particle_rules", PARTICLE_RULES)
        if rules != PARTICLE_RULES:
            raise ConfigError(f"{where or cls.KEY}.particle_rules: {rules!r}; only {PARTICLE_RULES} runs here")
        return super().from_dict(data, where)

    def identity(self) -> dict[str, Any]:
        """The settings that decide the results; `temperature_layout`, the particle keys and
        `continuation` only when not at their defaults (so a grid from before them reruns nothing); a
        particle job's also names PARTICLE_RULES (so one finished under older rules reruns)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, default in IDENTITY_DEFAULTS.items():
            if data[key] == default:
                data.pop(key)
        if self.method == PARTICLE_FILTERING:
            data["particle_rules"] = PARTICLE_RULES
        return data

    @property
    def stops_at_boxed(self) -> bool:
        """`stop_at_boxed`, or search-and-learn's rule for the method: only its DVTS stops at "boxed{"."""
        return self.stop_at_boxed if self.stop_at_boxed is not None else self.method == "dvts"

    @property
    def guided(self) -> bool:
        """Whether a PRM guides this search step by step (beam search, DVTS)."""
        return self.method in GUIDED_METHODS

    def validate(self, where: str) -> None:
        require_one_of(self.method, METHODS, f"{where}.method")
        require_at_least(self.n, 1, f"{where}.n")
        self._validate_sampling(where)
        require_at_least(self.max_tokens, 1, f"{where}.max_tokens")
        require_one_of(self.aggregation, AGGREGATIONS, f"{where}.aggregation")
        require_one_of(self.temperature_layout, ("blocks", "interleaved"), f"{where}.temperature_layout")
        if self.temperature_layout != "blocks" and self.method != "best_of_n":
            raise ConfigError(f"{where}.temperature_layout: for best_of_n only (DVTS cycles, beam search keeps blocks)")
        if self.stop and (self.guided or not all(isinstance(s, str) and s for s in self.stop)):
            raise ConfigError(
                f"{where}.stop: non-empty strings, for best_of_n only (beam search and DVTS end steps at blank lines)"
            )
        self._validate_particles(where)
        require_one_of(self.continuation, CONTINUATIONS, f"{where}.continuation")
        if self.continuation != IDENTITY_DEFAULTS["continuation"] and not self.guided:
            raise ConfigError(f"{where}.continuation: for step-wise searches only ({self.method} has no steps)")
        if self.guided:
            require_at_least(self.beam_width, 1, f"{where}.beam_width")
            if self.method != PARTICLE_FILTERING and self.n % self.beam_width:
                raise ConfigError(
                    f"{where}.n: {self.n} is not a multiple of beam_width {self.beam_width} "
                    f"({self.method} needs n / beam_width whole beams)"
                )
            require_at_least(self.num_iterations, 1, f"{where}.num_iterations")
            require_at_least(self.lookahead, 0, f"{where}.lookahead")

    def _validate_particles(self, where: str) -> None:
        """Particle keys only for particle filtering, and there the budget splits into whole sweeps of
        at least `reference_particles` particles; the beam keys that do not apply to it are refused."""
        if self.method != PARTICLE_FILTERING:
            for key in PARTICLE_KEYS:
                if getattr(self, key) != IDENTITY_DEFAULTS[key]:
                    raise ConfigError(f"{where}.{key}: for particle_filtering only")
            return
        for key in NOT_FOR_PARTICLES:
            if getattr(self, key) != SEARCH_DEFAULTS[key]:
                raise ConfigError(
                    f"{where}.{key}: does not apply to particle_filtering "
                    f"(its search keys: {', '.join(PARTICLE_SEARCH_KEYS)})"
                )
        require_at_least(self.sweeps, 1, f"{where}.sweeps")
        if self.n % self.sweeps:
            raise ConfigError(
                f"{where}.sweeps: n {self.n} does not split into {self.sweeps} sweeps (n / sweeps particles each)"
            )
        require_at_least(self.reference_particles, 0, f"{where}.reference_particles")
        if self.reference_particles > self.n // self.sweeps:
            raise ConfigError(
                f"{where}.reference_particles: {self.reference_particles} is more than the "
                f"{self.n // self.sweeps} particles of a sweep (n {self.n} / sweeps {self.sweeps})"
            )
        if self.sweeps > 1 and self.reference_particles == self.n // self.sweeps:
            raise ConfigError(
                f"{where}.reference_particles: {self.reference_particles} leaves no particle free to resample "
                f"among the {self.n // self.sweeps} of a sweep (n {self.n} / sweeps {self.sweeps})"
            )
        require_one_of(self.selection, SELECTIONS, f"{where}.selection")
        require_one_of(self.resampling, RESAMPLINGS, f"{where}.resampling")
        if not self.weight_temperature > 0:
            raise ConfigError(f"{where}.weight_temperature: must be > 0, got {self.weight_temperature}")

    def _validate_sampling(self, where: str) -> None:
        if not self.temperatures:
            raise ConfigError(f"{where}.temperatures: needs at least one temperature")
        if any(t < 0 for t in self.temperatures):
            raise ConfigError(f"{where}.temperatures: must be >= 0, got {self.temperatures}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"{where}.top_p: must be in (0, 1], got {self.top_p}")
        ratios = self.temperature_ratios
        if ratios is None:
            return
        if len(ratios) != len(self.temperatures):
            raise ConfigError(
                f"{where}.temperature_ratios: {len(ratios)} ratios for "
                f"{len(self.temperatures)} temperatures; give one ratio per temperature"
            )
        if any(r < 0 for r in ratios):
            raise ConfigError(f"{where}.temperature_ratios: must be >= 0, got {ratios}")
        if not math.isclose(sum(ratios), 1.0, abs_tol=1e-6):
            raise ConfigError(f"{where}.temperature_ratios: must sum to 1, got {sum(ratios):g}")


def _field_defaults(cls: type) -> dict[str, Any]:
    """Each field's default value (default_factory called), for the fields that have one."""
    defaults = {}
    for f in fields(cls):
        if f.default is not MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not MISSING:
            defaults[f.name] = f.default_factory()
    return defaults


SEARCH_DEFAULTS = _field_defaults(SearchSettings)


@dataclass
class GenerateJob:
    """Everything a `sal generate` job needs: the policy model, the search, and (for beam search
    and DVTS) the in-search PRM."""

    model: ModelSettings
    search: SearchSettings
    prm: PRMSettings | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerateJob:
        prm = data.get("prm")
        job = cls(
            model=ModelSettings.from_dict(data["model"], "model"),
            search=SearchSettings.from_dict(data["search"], "search"),
            prm=PRMSettings.from_dict(prm, "prm") if prm else None,
        )
        job.require_prm()
        return job

    def require_prm(self) -> None:
        """Beam search and DVTS cannot run without the PRM that guides them: say so before any model loads."""
        if self.search.guided and self.prm is None:
            raise ConfigError(f"search.method {self.search.method} needs a PRM to guide it (prm is missing)")
