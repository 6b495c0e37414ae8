"""The programs `sal` and the workflow start (`sal`, `vllm`, `snakemake`, `sbatch`): those installed next
to the running Python first, then PATH.

`.venv/bin/snakemake ...` without activating the environment would otherwise run every job into
`sal: command not found` (exit 127), visible only in each job's log, and `.venv-vllm/bin/sal
with-servers` would not find the `vllm` beside it. The commands keep saying `sal` / `vllm` (a rule's
text is part of what Snakemake compares to decide reruns), and PATH gets the interpreter's folder
first, so the processes started with that environment (jobs, servers, the wrapped command) find them.
A program found nowhere is one line naming it and what to do, not a FileNotFoundError traceback.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import MutableMapping
from pathlib import Path

from sal_core.errors import ConfigError

#: what to do when a program is missing, by name
INSTALL_HINTS = {
    "sal": "activate the environment that has sal_core installed (`source .venv/bin/activate`) or install it "
    "(`pip install -e .`)",
    "vllm": "install vLLM into this environment (`make vllm-env`, then run `.venv-vllm/bin/sal`) or activate one "
    "that has it",
    "sbatch": "run on a Slurm login node, or leave out --sbatch to start the servers here",
}


def interpreter_folder_first(environ: MutableMapping[str, str]) -> None:
    """Put this interpreter's folder first on `environ`'s PATH (once)."""
    folder = str(Path(sys.executable).parent)
    path = environ.get("PATH", "")
    if path.split(os.pathsep)[0] != folder:
        environ["PATH"] = os.pathsep.join([folder, path]) if path else folder


def find_program(name: str, environ: MutableMapping[str, str]) -> str:
    """`name` as a process started with `environ` runs it: beside this interpreter, else on its PATH.
    ConfigError naming the program and what to do when there is none."""
    here = Path(sys.executable).parent / name
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    found = shutil.which(name, path=environ.get("PATH", ""))
    if found is None:
        hint = INSTALL_HINTS.get(name, "install it or put it on PATH")
        raise ConfigError(f"`{name}` is neither next to {sys.executable} nor on PATH: {hint}")
    return found


def put_sal_on_path(environ: MutableMapping[str, str] = os.environ) -> str:
    """Put the folder of this interpreter's `sal` first on PATH; the `sal` jobs will run. ConfigError
    with what to do when there is none, here or on PATH."""
    found = find_program("sal", environ)
    if Path(found).parent == Path(sys.executable).parent:
        interpreter_folder_first(environ)
    return found
