"""What a rule's job asks of Slurm: the config's resources block over the workflow's defaults, grown per
attempt as the profile's defaults grow, capped at and checked against the partition's limits (parsed
from real `scontrol` / `sinfo` output). The real cluster's side is tests/test_slurm.py and
tests/test_slurm_partitions.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sal_core.errors import ConfigError
from sal_core.partitions import Partition, Request, check_requests, parse_partitions, slurm_minutes
from sal_core.resources import KEYS, RULE_DEFAULTS, grows_with_attempt, per_attempt, rule_value, setting_name

REPO = Path(__file__).resolve().parent.parent

# `scontrol -o show partition` and `sinfo -h -o "%R %m"` of the CI cluster with a test partition added
SCONTROL = (
    "PartitionName=debug AllowGroups=ALL Default=YES QoS=N/A DefaultTime=NONE MaxNodes=UNLIMITED"
    " MaxTime=UNLIMITED MinNodes=0 Nodes=vm State=UP TotalCPUs=16 DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED\n"
    "PartitionName=short AllowGroups=ALL Default=NO QoS=N/A DefaultTime=NONE MaxNodes=UNLIMITED"
    " MaxTime=00:25:00 MinNodes=0 Nodes=vm State=UP TotalCPUs=16 DefMemPerNode=UNLIMITED MaxMemPerNode=5000\n"
    "PartitionName=long Default=NO MaxTime=2-00:00:00 Nodes=vm,gpu[1-2] MaxMemPerNode=UNLIMITED\n"
)
SINFO = "debug 65536\nshort 65536\nlong 32000\nlong 128000+\n"


def test_every_rule_with_defaults_is_a_config_key_and_no_profile_overrides_one() -> None:
    """The schema's resources block names exactly the rules with defaults; profiles/slurm sets none of
    their keys (it would hide the config's) and profiles/slurm-served only its client rules', GPU-less."""
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert set(schema["properties"]["resources"]["properties"]) == set(RULE_DEFAULTS)
    assert set(schema["$defs"]["rule_resources"]["properties"]) == {"threads", "gpu", "mem_mb", "runtime"}
    slurm, served = (
        yaml.safe_load((REPO / "profiles" / p / "config.yaml").read_text()) for p in ("slurm", "slurm-served")
    )
    assert not set(slurm["set-threads"]) & set(RULE_DEFAULTS), "profiles/slurm set-threads overrides the config"
    for rule, values in slurm["set-resources"].items():
        assert rule not in RULE_DEFAULTS or not set(values) & set(KEYS), f"profiles/slurm overrides {rule}'s config"
    assert slurm["set-resources"]["train_prm"] == {"nodes": 1}  # accelerate's processes on one node
    clients = {"generate", "score", "label_sample", "label_steps"}
    overridden = {rule for rule, values in served["set-resources"].items() if set(values) & set(KEYS)}
    assert overridden & set(RULE_DEFAULTS) == clients
    assert all(served["set-resources"][rule]["gpu"] == 0 for rule in clients)


def test_config_values_win_over_defaults_and_name_their_key() -> None:
    resources = {"generate": {"mem_mb": 64000}, "evaluate": {"threads": 8}}
    assert rule_value(resources, "generate", "mem_mb") == 64000
    assert rule_value(resources, "generate", "runtime") == RULE_DEFAULTS["generate"]["runtime"]
    assert rule_value(resources, "evaluate_protocol", "threads") == 8  # runs as evaluate does
    assert setting_name(resources, "generate", "mem_mb") == "resources.generate.mem_mb"
    assert "workflow's default 120" in setting_name(resources, "generate", "runtime")
    assert "profile" in setting_name(resources, "merge", "mem_mb")
    assert "profile" in setting_name(resources, "generate", "mem_mb", by_profile=True)


def test_values_grow_with_the_attempt_only_as_the_profiles_defaults_do() -> None:
    class Parsed:  # what Snakemake keeps of a profile's default-resources value: the expression
        def __init__(self, raw: str | None) -> None:
            self.raw = raw

    assert grows_with_attempt({"mem_mb": Parsed("2000 * attempt"), "runtime": Parsed("30 * attempt")}) == {
        "mem_mb",
        "runtime",
    }
    assert grows_with_attempt({"mem_mb": Parsed("32000"), "runtime": Parsed("attempts_left")}) == frozenset()
    assert grows_with_attempt({}) == frozenset()
    caps: dict[str, int] = {}
    grown = per_attempt(2000, caps, "generate.mem_mb")
    assert [grown(None, attempt) for attempt in (1, 2, 3)] == [2000, 4000, 6000]
    caps["generate.mem_mb"] = 5000  # the partition's limit, once read
    assert [grown(None, attempt) for attempt in (1, 2, 3)] == [2000, 4000, 5000]


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("UNLIMITED", None), ("infinite", None), ("00:25:00", 25), ("2-00:00:00", 2880), ("1-12", 2160), ("90", 90),
     ("10:30", 11), ("1-00:01", 1441)],
)  # fmt: skip
def test_slurm_time_formats(text: str, minutes: int | None) -> None:
    assert slurm_minutes(text) == minutes


def test_partition_limits_are_the_smaller_of_the_partitions_and_its_largest_nodes() -> None:
    partitions = parse_partitions(SCONTROL, SINFO)
    assert partitions["debug"] == Partition("debug", True, None, 65536)
    assert partitions["short"] == Partition("short", False, 25, 5000)
    assert partitions["long"] == Partition("long", False, 2880, 128000)


def test_a_first_attempt_above_the_partition_is_one_line_naming_the_setting() -> None:
    partitions = parse_partitions(SCONTROL, SINFO)
    names = {("generate", "mem_mb"): "resources.generate.mem_mb", ("generate", "runtime"): "resources.generate.runtime"}
    caps = check_requests([Request("generate", "short", 2000, 10)], partitions, names)
    assert caps == {"generate.mem_mb": 5000, "generate.runtime": 25}
    assert check_requests([Request("generate", None, 64000, 240)], partitions, names) == {"generate.mem_mb": 65536}
    with pytest.raises(ConfigError) as err:
        check_requests([Request("generate", "short", 2000, 30)], partitions, names)
    assert str(err.value).startswith("resources.generate.runtime: 30 minutes is more than partition short allows")
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="resources.generate.mem_mb: 64000 MB of memory .* partition short"):
        check_requests([Request("generate", "short", 64000, 10)], partitions, names)
    with pytest.raises(ConfigError, match="slurm_partition gpu of rule generate: no such partition"):
        check_requests([Request("generate", "gpu", 1, 1)], partitions, names)
