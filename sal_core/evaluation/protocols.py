"""Which evaluation protocols a grid reports, and the `sal evaluate` flags of each.

`evaluation.protocols` lists them (`evaluation.protocol`, one, still works): the first writes the
run's metrics file, `accuracy.csv`, `compute_optimal.csv` and drives the plots, exactly as a single
protocol always did; every further one writes `metrics/{prm}.{protocol}.parquet` per run and
`accuracy.{protocol}.csv` / `compute_optimal.{protocol}.csv` (sal_core.paths). A further protocol is
a job of its own (rule `evaluate_protocol`): the protocols share no grading (search-and-learn's
extracts answers by its own rules and checks them with its own equivalence, sal_core.evaluation.
sal_protocol), only the read of the merged table, so one job each costs nothing extra and adding a
protocol to a finished grid leaves every existing result, the first protocol's included, as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sal_core.constants import PROTOCOLS
from sal_core.errors import ConfigError

#: config key -> `sal evaluate` flag, in the order the flags are written (a job's params: keep it)
FLAGS = {
    "protocol": "--protocol",
    "aggregation": "--aggregation",
    "num_subsamples": "--num-subsamples",
    "timeout": "--timeout",
}


def evaluation_protocols(evaluation: Mapping[str, Any]) -> list[str]:
    """The protocols to report, the first driving the plots; one ConfigError line for a bad list."""
    single = evaluation.get("protocol")
    listed = evaluation.get("protocols")
    if listed is None:
        return [single or "default"]
    if not isinstance(listed, list) or not listed or len(set(listed)) != len(listed):
        raise ConfigError(
            f"evaluation.protocols: a list of distinct protocols ({', '.join(PROTOCOLS)}), got {listed!r}"
        )
    for protocol in listed:
        if protocol not in PROTOCOLS:
            raise ConfigError(f"evaluation.protocols: {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    if single is not None and single != listed[0]:
        raise ConfigError(
            f"evaluation.protocol: {single!r} but evaluation.protocols starts with {listed[0]!r}; set one of them"
        )
    return list(listed)


def evaluation_graders(evaluation: Mapping[str, Any]) -> list[str]:
    """`evaluation.graders` (default: [default]), the first driving the metrics; several graders need
    the default protocol first (the sal protocol has its own grader). One ConfigError line when bad."""
    from sal_core.evaluation.graders import DEFAULT, parse_graders

    listed = evaluation.get("graders")
    if listed is None:
        return [DEFAULT]
    if not isinstance(listed, list):
        raise ConfigError(f"evaluation.graders: a list of graders, got {listed!r}")
    try:
        names = parse_graders(listed)
    except ConfigError as err:
        raise ConfigError(str(err).replace("--graders", "evaluation.graders")) from None
    first = evaluation_protocols(evaluation)[0]
    if names != [DEFAULT] and first != "default":
        raise ConfigError(f"evaluation.graders: needs the default protocol first, not {first!r}")
    return names


def grader_flag(evaluation: Mapping[str, Any]) -> str:
    """` --graders a,b` for the first protocol's evaluate jobs, "" at the default (so its jobs do not rerun)."""
    names = evaluation_graders(evaluation)
    return "" if names == ["default"] else " --graders " + ",".join(names)


def first_grader_flag(evaluation: Mapping[str, Any]) -> str:
    """` --graders NAME` of the grader that drives the metrics, for the per-problem credit (rule credit);
    "" when it is the default one."""
    first = evaluation_graders(evaluation)[0]
    return "" if first == "default" else f" --graders {first}"


def evaluation_flags(evaluation: Mapping[str, Any], with_protocol: bool = True) -> str:
    """`sal evaluate`'s flags for the config's `evaluation` block: those of the first protocol (the same
    string a single `protocol` always gave, so its jobs do not rerun), or without `--protocol` for the
    rule that evaluates the further ones."""
    chosen = dict(evaluation)
    first = evaluation_protocols(evaluation)[0]
    if "protocol" not in chosen and first != "default":
        chosen["protocol"] = first
    if not with_protocol:
        chosen.pop("protocol", None)
    return " ".join(f"{flag} {chosen[key]}" for key, flag in FLAGS.items() if key in chosen)
