"""What each rule's job asks of its executor (CPUs, GPUs, memory, time): the config's `resources:`
block over the workflow's defaults, as the rules declare them (workflow/rules/common.smk `resource`).

A profile only supplies defaults (for rules and keys this table does not cover): Snakemake applies a
profile's `set-resources` / `set-threads` over a rule's own, so a profile that set these rules' values
would hide the config's. How much memory and time grow with the attempt is the profile's choice too:
when its default `mem_mb` / `runtime` is an expression of `attempt` (profiles/slurm: "2000 * attempt"),
the rules' values grow the same way (value x attempt, capped at what the partition allows); threads
and GPUs never grow. Otherwise (profiles/default) the values stay plain numbers, which Snakemake
reads for free, where a callable costs it a signature inspection per job (bench/dag_scale.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

#: the keys of a rule's entry in the config's `resources:` block
KEYS = ("threads", "gpu", "mem_mb", "runtime")
#: the keys that grow with the attempt (a job killed for memory or time gets more of both)
GROWING = ("mem_mb", "runtime")
#: each rule's values where the config says nothing (mem_mb in MB, runtime in minutes): one job's needs
#: on a GPU cluster with in-process models, but threads as few as a laptop run wants (the GPU
#: experiments' configs ask for 8); profiles/slurm-served overrides its client rules'
RULE_DEFAULTS: dict[str, dict[str, int]] = {
    "generate": {"threads": 1, "gpu": 1, "mem_mb": 16000, "runtime": 120},
    "score": {"threads": 1, "gpu": 1, "mem_mb": 16000, "runtime": 60},
    "evaluate": {"threads": 2, "gpu": 0, "mem_mb": 8000, "runtime": 60},
    "label_sample": {"threads": 1, "gpu": 1, "mem_mb": 16000, "runtime": 120},
    "label_steps": {"threads": 1, "gpu": 1, "mem_mb": 16000, "runtime": 240},
    "train_prm": {"threads": 1, "gpu": 0, "mem_mb": 128000, "runtime": 720},
    "processbench": {"threads": 1, "gpu": 1, "mem_mb": 16000, "runtime": 60},
}
#: config `resources:` entries that other rules read too (evaluate_protocol grades as evaluate does,
#: credit grades the same run a second time)
SAME_AS = {"evaluate_protocol": "evaluate", "credit": "evaluate"}


def config_entry(rule: str) -> str:
    """The config's resources entry that sets `rule`'s values."""
    return SAME_AS.get(rule, rule)


def rule_value(resources: Mapping[str, Mapping[str, int]], rule: str, key: str) -> int:
    """`rule`'s `key` from the config's resources block, else the workflow's default."""
    entry = config_entry(rule)
    return resources.get(entry, {}).get(key, RULE_DEFAULTS[entry][key])


def setting_name(resources: Mapping[str, Mapping[str, int]], rule: str, key: str, by_profile: bool = False) -> str:
    """Where `rule`'s `key` comes from (`by_profile`: the profile's set-resources), as a user looks for it."""
    entry = config_entry(rule)
    if by_profile or entry not in RULE_DEFAULTS:
        return f"the profile's {key} of rule {rule} (its set-resources / default-resources)"
    if key in resources.get(entry, {}):
        return f"resources.{entry}.{key}"
    return f"resources.{entry}.{key} (not set: the workflow's default {RULE_DEFAULTS[entry][key]})"


def grows_with_attempt(default_resources: Mapping[str, Any]) -> frozenset[str]:
    """The GROWING keys whose default (the profile's `default-resources`, parsed by Snakemake: each
    value has the expression as `raw`) is an expression of `attempt`."""
    grows = set()
    for key in GROWING:
        raw = getattr(default_resources.get(key), "raw", None)
        if isinstance(raw, str) and re.search(r"\battempt\b", raw):
            grows.add(key)
    return frozenset(grows)


def per_attempt(value: int, caps: Mapping[str, int], name: str) -> Callable[[Any, int], int]:
    """value x attempt, at most `caps[name]` once that is known: the partition's limit, read when a
    Slurm run starts (sal_core.partitions), since a request above it would wait in the queue for ever."""

    def grown(wildcards: Any, attempt: int) -> int:
        limit = caps.get(name)
        return value * attempt if limit is None else min(value * attempt, limit)

    return grown
