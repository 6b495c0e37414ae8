"""Fetch the Hub models a workflow config needs into the Hub cache, once, on a host with internet, so
that jobs on compute nodes without it load them offline (docs/offline.md).

Every models: and prms: entry whose path is a Hub name (and every train.base_model given as one) is
fetched at its `revision` (default branch when none), top-level files and one copy of the weights;
a Hub dataset the learn jobs read (processbench.data, train.dataset) is loaded once into datasets' cache.
The sizes are reported first, from the Hub's file metadata; nothing is downloaded when a model is gated
and no token is given (HF_TOKEN, or `hf auth login`), missing, or the disk lacks the room. The cache
is HF_HUB_CACHE, else HF_HOME/hub: point it at a disk the compute nodes share.

    sal stage-models --config config/experiments/math500.yaml --dry-run   # sizes only
    sal stage-models --config config/experiments/math500.yaml
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from sal_core.settings.yaml_file import load_yaml

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--config",
        required=True,
        nargs="+",
        metavar="FILE",
        help="the workflow config file(s), as given to snakemake --configfile (later files update earlier ones)",
    )
    parser.add_argument("--dry-run", action="store_true", help="report what would be fetched and its size only")


def merged(configs: list[dict[str, Any]]) -> dict[str, Any]:
    """Config files layered as Snakemake layers --configfile: later mappings update earlier ones, key by key."""
    result: dict[str, Any] = {}
    for config in configs:
        for key, value in config.items():
            if isinstance(value, dict) and isinstance(result.get(key), dict):
                result[key] = merged([result[key], value])
            else:
                result[key] = value
    return result


def run(args: argparse.Namespace) -> int:
    from sal_core.learn.stage_data import stage_data
    from sal_core.pipeline.stage_models import stage_grid
    from sal_core.settings.check import check_config
    from sal_core.settings.grid import build_grid

    logging.getLogger("httpx2").setLevel(logging.WARNING)  # one line per request otherwise; bars show progress
    config = merged([load_yaml(path, "--config") or {} for path in args.config])
    grid = check_config(config, SCHEMA) if SCHEMA.is_file() else build_grid(config)
    errors = stage_grid(grid, args.dry_run)
    if not errors:  # the learn jobs' Hub datasets (ProcessBench, stepwise data), loaded as their jobs load them
        errors = stage_data(grid, args.dry_run)
    for line in errors:
        print(f"sal stage-models: error: {line}", file=sys.stderr)
    return 2 if errors else 0
