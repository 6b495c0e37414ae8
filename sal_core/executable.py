"""The `sal` the workflow's shell commands run: the one installed next to the Python running Snakemake.

`.venv/bin/snakemake ...` without activating the environment would otherwise run every job into
`sal: command not found` (exit 127), visible only in each job's log. The commands keep saying `sal`
(their text is part of what Snakemake compares to decide reruns), and PATH gets the interpreter's
folder first, so jobs, which inherit Snakemake's environment, find that `sal`.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from sal_core.errors import ConfigError


def put_sal_on_path(environ: os._Environ[str] | dict[str, str] = os.environ) -> str:
    """Put the folder of this interpreter's `sal` first on PATH; the `sal` jobs will run. ConfigError
    with what to do when there is none, here or on PATH."""
    folder = Path(sys.executable).parent
    here = folder / "sal"
    path = environ.get("PATH", "")
    if here.is_file() and os.access(here, os.X_OK):
        if path.split(os.pathsep)[0] != str(folder):
            environ["PATH"] = os.pathsep.join([str(folder), path]) if path else str(folder)
        return str(here)
    found = shutil.which("sal", path=path)
    if found is None:
        raise ConfigError(
            f"`sal` is neither next to {sys.executable} nor on PATH: activate the environment that has "
            "sal_core installed (`source .venv/bin/activate`) or install it (`pip install -e .`)"
        )
    return found
