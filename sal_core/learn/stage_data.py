"""The Hub datasets the learn jobs read, staged by `sal stage-models` beside the models: ProcessBench
(`processbench.data`) and a trained PRM's stepwise data (`prms.<name>.train.dataset`).

Staging one is loading it once, on the submitting host, with the very loader its job uses
(`load_processbench`, `load_stepwise`): `datasets` keeps the prepared tables in its cache
(HF_DATASETS_CACHE, else HF_HOME/datasets), and the job, run with the Hub offline (sal_core.hub),
finds them there without a request ("Using the latest cached version of the dataset"), as
`datasets` documents for offline use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sal_core.errors import DatasetError
from sal_core.hub import HUB_NAME
from sal_core.settings.grid import Grid


@dataclass(frozen=True)
class HubData:
    """A Hub dataset a learn job reads: the config key, the name, and how the job loads it."""

    key: str
    name: str
    splits: tuple[str, ...]
    subset: str | None = None

    def load(self) -> int:
        """Load it as the job does (into `datasets`' cache); the rows read."""
        if self.key == "processbench.data":
            from sal_core.learn.processbench import load_processbench

            return len(load_processbench(self.name, list(self.splits)))
        from sal_core.learn.stepwise import load_stepwise

        return len(load_stepwise(self.name, self.splits[0], self.subset))


def hub_data(grid: Grid) -> list[HubData]:
    """The grid's learn jobs' Hub datasets (none without `processbench:` or `train:` blocks)."""
    from sal_core.settings.stepwise_source import is_local

    found = []
    bench = grid.learn.processbench
    if bench is not None and bench.data != "builtin" and not is_local(bench.data) and HUB_NAME.fullmatch(bench.data):
        found.append(HubData("processbench.data", bench.data, tuple(bench.splits)))
    for name, trained in grid.learn.trained.items():
        data = trained.settings.dataset
        if trained.labels is None and isinstance(data, str) and not is_local(data):
            found.append(
                HubData(f"prms.{name}.train.dataset", data, (trained.settings.split,), trained.settings.subset)
            )
    return found


def stage_data(grid: Grid, dry_run: bool, say: Callable[[str], None] = print) -> list[str]:
    """Load each Hub dataset of the grid's learn jobs once (only name them with `dry_run`); error lines."""
    errors = []
    for data in hub_data(grid):
        where = f"{data.name} ({data.key}, split {', '.join(data.splits)})"
        if dry_run:
            say(f"  dataset {where}: loaded through `datasets` when staged")
            continue
        try:
            say(f"staged dataset {where}: {data.load()} rows")
        except DatasetError as err:
            errors.append(f"{data.key}: {err}")
    return errors
