"""Make a workdir look like a finished run of a Snakefile, without running a job: for timing dry runs.

Snakemake builds the DAG (its own API, with the same command-line arguments as a dry run), then every
job's outputs and logs are created empty, level by level with increasing modification times, and
Snakemake's own `persistence.finished(job)` writes the metadata a real run leaves (params, command,
input list, code), so that a dry run afterwards does the same checks as on a real finished sweep
and answers "Nothing to be done". A dry run reads only existence, times and that metadata, never the
contents (check: the bench's dry run on the result must print "Nothing to be done").

    python bench/fake_finished.py -s workflow/Snakefile -d WORKDIR --configfile CONFIG
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def fake_finished(snakemake_args: list[str], cwd: Path) -> float:
    """Run this script on `snakemake_args` (as for `snakemake -n`); return the seconds it took."""
    start = time.perf_counter()
    command = [sys.executable, __file__, *snakemake_args, "--cores", "1", "--quiet", "all"]
    subprocess.run(command, check=True, cwd=cwd)
    return time.perf_counter() - start


def _touch(path: str, when: float, directory: bool = False) -> None:
    target = Path(path)
    if directory:
        target.mkdir(parents=True, exist_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch()
    os.utime(target, (when, when))


def _finish_all(workflow, change_type) -> None:  # noqa: ANN001 (Snakemake's own objects)
    """Stands in for Workflow.list_changes: build the DAG, then make every job look finished."""
    workflow._prepare_dag(forceall=False, ignore_incomplete=False, lock_warn_only=True)
    workflow._build_dag()
    dag = workflow.dag
    levels = list(dag.toposorted())
    base = time.time() - 10 * (len(levels) + 2)
    produced = {str(f) for job in dag.jobs for f in job.output}
    for job in dag.jobs:  # source files (the dataset snapshot) older than everything built from them
        for f in job.input:
            if str(f) not in produced and os.path.exists(f):
                os.utime(f, (base - 10, base - 10))
    for depth, level in enumerate(levels):
        for job in level:
            for f in job.output:
                _touch(f, base + 10 * depth, directory=f.is_directory)
            for f in job.log:
                _touch(f, base + 10 * depth)
    from snakemake.settings.types import ExecutionSettings, RemoteExecutionSettings

    workflow.execution_settings = ExecutionSettings()  # what a real run has (keep_metadata=True)
    workflow.remote_execution_settings = RemoteExecutionSettings()
    for level in levels:
        for job in level:
            if job.output:
                workflow.async_run(workflow.persistence.finished(job))


if __name__ == "__main__":
    from snakemake import cli
    from snakemake.workflow import Workflow

    Workflow.list_changes = _finish_all
    sys.exit(cli.main([*sys.argv[1:], "--list-changes", "params"]))
