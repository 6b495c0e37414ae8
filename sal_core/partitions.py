"""What a Slurm partition allows one job (time, memory), read from Slurm, and the check that a run's
requests fit before any job is submitted.

A job asking for more time than the partition's MaxTime, or more memory than MaxMemPerNode or its
largest node, is not refused by every cluster: without `EnforcePartLimits` it waits in the queue for
ever (reason PartitionTimeLimit / MemoryLimit) and the run with it. So the workflow reads the limits
when a Slurm run starts (common.smk's `onstart`), stops with one line naming the setting when a first
attempt asks too much, and caps later attempts' growth at the limit (sal_core.resources.per_attempt).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sal_core.errors import ConfigError

UNLIMITED = ("UNLIMITED", "INFINITE", "NONE", "")


@dataclass(frozen=True)
class Partition:
    name: str
    default: bool
    #: MaxTime in minutes; None: unlimited
    max_minutes: int | None
    #: the smaller of MaxMemPerNode and the largest node's memory, in MB; None: unlimited
    max_mem_mb: int | None


@dataclass(frozen=True)
class Request:
    """One rule's first-attempt request as Snakemake will submit it."""

    rule: str
    partition: str | None
    mem_mb: int | None
    runtime: int | None


def slurm_minutes(text: str) -> int | None:
    """Slurm's time formats (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S) in whole minutes, rounded up."""
    if text.upper() in UNLIMITED:
        return None
    days, _, rest = text.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if days:  # D-H, D-H:M, D-H:M:S
        hours, minutes, seconds = (parts + [0, 0])[:3]
    elif len(parts) == 3:
        hours, minutes, seconds = parts
    else:  # M or M:S
        hours, minutes, seconds = 0, parts[0], (parts[1:] or [0])[0]
    return (int(days or 0) * 24 + hours) * 60 + minutes + (seconds > 0)


def _mb(text: str) -> int | None:
    match = re.match(r"(\d+)", text)
    return int(match[1]) if match and text.upper() not in UNLIMITED else None


def parse_partitions(scontrol: str, sinfo: str) -> dict[str, Partition]:
    """Partitions from `scontrol -o show partition` and `sinfo -h -o "%R %m"` (memory per node; sinfo
    prints one line per group of alike nodes, "65536+" for mixed sizes)."""
    node_mem: dict[str, int] = {}
    for line in sinfo.splitlines():
        if len(fields := line.split()) == 2 and (mem := _mb(fields[1])) is not None:
            node_mem[fields[0]] = max(node_mem.get(fields[0], 0), mem)
    partitions = {}
    for line in scontrol.splitlines():
        fields = dict(re.findall(r"(\S+?)=(\S*)", line))
        if "PartitionName" not in fields:
            continue
        name = fields["PartitionName"]
        limits = [m for m in (_mb(fields.get("MaxMemPerNode", "")), node_mem.get(name)) if m is not None]
        partitions[name] = Partition(
            name, fields.get("Default") == "YES", slurm_minutes(fields.get("MaxTime", "")), min(limits, default=None)
        )
    return partitions


def read_partitions() -> dict[str, Partition]:
    """The cluster's partitions; ConfigError in one line when Slurm does not answer."""
    commands = (["scontrol", "-o", "show", "partition"], ["sinfo", "-h", "-o", "%R %m"])
    outputs = []
    for command in commands:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise ConfigError(f"cannot read the partitions' limits ({' '.join(command)}): {err}") from None
        if done.returncode != 0:
            raise ConfigError(f"cannot read the partitions' limits ({' '.join(command)}): {done.stderr.strip()}")
        outputs.append(done.stdout)
    return parse_partitions(*outputs)


def partition_of(request: Request, partitions: Mapping[str, Partition]) -> Partition:
    """The partition a request goes to: its slurm_partition, else the cluster's default."""
    if request.partition:
        if request.partition not in partitions:
            known = ", ".join(partitions)
            raise ConfigError(
                f"slurm_partition {request.partition} of rule {request.rule}: no such partition ({known})"
            )
        return partitions[request.partition]
    default = [p for p in partitions.values() if p.default]
    if not default:
        raise ConfigError(f"rule {request.rule} names no slurm_partition and the cluster has no default partition")
    return default[0]


def check_requests(
    requests: Iterable[Request], partitions: Mapping[str, Partition], names: Mapping[tuple[str, str], str]
) -> dict[str, int]:
    """The limits later attempts are capped at ("rule.key": value); ConfigError naming the setting
    (`names[(rule, key)]`) when a first attempt asks for more than its partition allows."""
    caps = {}
    for request in requests:
        partition = partition_of(request, partitions)
        for key, asked, limit, unit in (
            ("mem_mb", request.mem_mb, partition.max_mem_mb, "MB of memory"),
            ("runtime", request.runtime, partition.max_minutes, "minutes"),
        ):
            if limit is None or asked is None:
                continue
            if asked > limit:
                raise ConfigError(
                    f"{names[(request.rule, key)]}: {asked} {unit} is more than partition {partition.name} allows"
                    f" a job ({limit}): ask for at most {limit}, or name a larger partition (slurm_partition)"
                )
            caps[f"{request.rule}.{key}"] = limit
    return caps
