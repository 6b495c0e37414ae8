"""Resolved settings of one job, validated before any model is loaded.

The workflow turns the user's config into these objects at DAG-build time (so a bad value stops
the run before any job starts), and passes them to `sal generate` / `sal score` as JSON.
Every error names the config key it comes from.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from sal_core.errors import ConfigError

METHODS = ("best_of_n", "beam_search", "dvts")
PRM_TYPES = ("rlhflow", "math-shepherd", "skywork", "qwen2.5-math", "trl", "server")
BACKENDS = ("transformers", "vllm", "openai")
#: what a `type: server` PRM speaks: `sal serve-prm`'s API, or vLLM's pooling API (Qwen2.5-Math-PRM)
SERVER_APIS = ("sal", "vllm-pooling")
#: where a server lives and how to reach it: they change no result, so they are not part of a job's identity
ENDPOINT_KEYS = ("url", "service_file", "api_key_env", "timeout", "retries", "wait", "max_in_flight")
#: what a server serves: part of a job's identity, but left out of it at their defaults (no server)
SERVED_KEYS = ("served_model", "revision", "api")
AGGREGATIONS = ("last", "min", "prod")
DTYPES = ("auto", "float32", "bfloat16", "float16")

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


def _build(cls, data: dict[str, Any], where: str):
    """Construct dataclass `cls` from `data`, naming `where.key` for unknown keys."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (allowed: {', '.join(sorted(known))})")
    try:
        obj = cls(**data)
    except TypeError as err:
        raise ConfigError(f"{where}: {err}") from err
    obj.validate(where)
    return obj


@dataclass(kw_only=True)
class EndpointSettings:
    """How a job reaches a model server (`backend: openai`, PRM `type: server`) instead of loading weights.

    `url` (http://host:port) or `service_file` (JSON written by `sal serve` / `sal serve-prm` when ready)
    says where it lives; `served_model` (and `revision`, when the server reports one) is checked against
    the server at job start. The API key is read from the environment variable named by `api_key_env`,
    so it never lands in a config, a result or a log.
    """

    url: str | None = None
    service_file: str | None = None
    served_model: str | None = None
    revision: str | None = None
    api_key_env: str | None = None
    #: seconds per HTTP request; a request that failed to connect or timed out is retried `retries` times
    timeout: float = 600.0
    retries: int = 3
    #: seconds to wait at job start for the service file to appear and the server to become ready
    wait: float = 0.0
    #: HTTP requests in flight at once from one job
    max_in_flight: int = 32

    def validate_endpoint(self, where: str, remote: bool, what: str) -> None:
        """Remote settings need a location and a served model; in-process ones must not set any."""
        if not remote:
            for key in ("url", "service_file", "served_model", "revision", "api_key_env"):
                if getattr(self, key) is not None:
                    raise ConfigError(f"{where}.{key}: only for {what}")
            return
        if (self.url is None) == (self.service_file is None):
            raise ConfigError(f"{where}.url: give exactly one of `url` and `service_file` for {what}")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}.url: {self.url!r} must start with http:// or https://")
        if not self.served_model:
            raise ConfigError(f"{where}.served_model: name the model the server must serve (checked at job start)")
        if self.timeout <= 0 or self.wait < 0:
            raise ConfigError(f"{where}.timeout / wait: timeout must be > 0 and wait >= 0")
        if self.retries < 0 or self.max_in_flight < 1:
            raise ConfigError(f"{where}.retries / max_in_flight: need retries >= 0 and max_in_flight >= 1")


def identity(settings: Any) -> dict[str, Any]:
    """The settings that decide a job's results: all but ENDPOINT_KEYS, and SERVED_KEYS only when set,
    so a server moving elsewhere reruns nothing and configs without servers keep their fingerprints."""
    data = asdict(settings)
    defaults = {f.name: f.default for f in fields(settings)}
    for key in ENDPOINT_KEYS:
        data.pop(key, None)
    for key in SERVED_KEYS:
        if key in data and data[key] == defaults[key]:
            data.pop(key)
    return data


@dataclass
class ModelSettings(EndpointSettings):
    """A policy (generator) model and how to run it. With `backend: openai`, `path` is where the
    tokenizer comes from (prompts are sent as token ids) and the endpoint settings say where the server is."""

    name: str
    path: str
    backend: str = "transformers"
    #: None: the model's own chat template; "none": raw text, no template; else a Jinja template string
    chat_template: str | None = None
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_model_len: int = 4096
    dtype: str = "auto"
    device: str = "auto"
    #: transformers: sequences per forward batch
    batch_size: int = 64
    #: vllm only
    gpu_memory_utilization: float = 0.9
    tensor_parallel_size: int | None = None
    enable_prefix_caching: bool = True

    def validate(self, where: str) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"{where}.backend: {self.backend!r} is not one of {', '.join(BACKENDS)}")
        if self.max_model_len < 16:
            raise ConfigError(f"{where}.max_model_len: must be at least 16, got {self.max_model_len}")
        if self.batch_size < 1:
            raise ConfigError(f"{where}.batch_size: must be at least 1, got {self.batch_size}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"{where}.dtype: {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError(f"{where}.gpu_memory_utilization: must be in (0, 1]")
        self.validate_endpoint(where, self.backend == "openai", "backend openai")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "model") -> ModelSettings:
        return _build(cls, data, where)


@dataclass
class PRMSettings(EndpointSettings):
    """A process reward model and how to run it. `type: server` scores through a server (see
    EndpointSettings and `api`); `path` is then only needed by `api: vllm-pooling`, for the tokenizer."""

    name: str
    type: str
    path: str = ""
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 8
    max_length: int = 4096
    api: str = "sal"

    def validate(self, where: str) -> None:
        if self.type not in PRM_TYPES:
            raise ConfigError(f"{where}.type: {self.type!r} is not one of {', '.join(PRM_TYPES)}")
        remote = self.type == "server"
        self.validate_endpoint(where, remote, "type server")
        if self.api not in SERVER_APIS or (self.api != "sal" and not remote):
            raise ConfigError(f"{where}.api: {self.api!r} is not one of {', '.join(SERVER_APIS)} (type server only)")
        if not self.path and (not remote or self.api == "vllm-pooling"):
            raise ConfigError(f"{where}.path: missing (the PRM's weights, or its tokenizer for api vllm-pooling)")
        if self.batch_size < 1:
            raise ConfigError(f"{where}.batch_size: must be at least 1, got {self.batch_size}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"{where}.dtype: {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if self.max_length < 1:
            raise ConfigError(f"{where}.max_length: must be at least 1, got {self.max_length}")

    def fingerprint(self) -> str:
        """Every setting that decides scores as stable JSON: equal fingerprints score alike."""
        return json.dumps(identity(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "prm") -> PRMSettings:
        return _build(cls, data, where)


@dataclass
class SearchSettings:
    """One search method at one n with one temperature scheme and seed.

    Best-of-N splits n samples across `temperatures` by `temperature_ratios`; beam search and DVTS
    cycle `temperatures` across beams / subtrees (ratios are not used there).
    """

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
    #: how step scores become one beam score during search
    aggregation: str = "last"
    seed: int = 0

    def validate(self, where: str) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"{where}.method: {self.method!r} is not one of {', '.join(METHODS)}")
        if self.n < 1:
            raise ConfigError(f"{where}.n: must be at least 1, got {self.n}")
        if not self.temperatures:
            raise ConfigError(f"{where}.temperatures: needs at least one temperature")
        if any(t < 0 for t in self.temperatures):
            raise ConfigError(f"{where}.temperatures: must be >= 0, got {self.temperatures}")
        if self.temperature_ratios is not None:
            if len(self.temperature_ratios) != len(self.temperatures):
                raise ConfigError(
                    f"{where}.temperature_ratios: {len(self.temperature_ratios)} ratios for "
                    f"{len(self.temperatures)} temperatures; give one ratio per temperature"
                )
            if any(r < 0 for r in self.temperature_ratios):
                raise ConfigError(f"{where}.temperature_ratios: must be >= 0, got {self.temperature_ratios}")
            if not math.isclose(sum(self.temperature_ratios), 1.0, abs_tol=1e-6):
                raise ConfigError(f"{where}.temperature_ratios: must sum to 1, got {sum(self.temperature_ratios):g}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"{where}.top_p: must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ConfigError(f"{where}.max_tokens: must be at least 1, got {self.max_tokens}")
        if self.aggregation not in AGGREGATIONS:
            raise ConfigError(f"{where}.aggregation: {self.aggregation!r} is not one of {', '.join(AGGREGATIONS)}")
        if self.method in ("beam_search", "dvts"):
            if self.beam_width < 1:
                raise ConfigError(f"{where}.beam_width: must be at least 1, got {self.beam_width}")
            if self.n % self.beam_width:
                raise ConfigError(
                    f"{where}.n: {self.n} is not a multiple of beam_width {self.beam_width} "
                    f"({self.method} needs n / beam_width whole beams)"
                )
            if self.num_iterations < 1:
                raise ConfigError(f"{where}.num_iterations: must be at least 1, got {self.num_iterations}")
            if self.lookahead < 0:
                raise ConfigError(f"{where}.lookahead: must be >= 0, got {self.lookahead}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "search") -> SearchSettings:
        return _build(cls, data, where)


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
        if job.search.method in ("beam_search", "dvts") and job.prm is None:
            raise ConfigError(f"search.method {job.search.method} needs a PRM to guide it (prm is missing)")
        return job

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
