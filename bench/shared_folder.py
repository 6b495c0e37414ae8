"""Where the benchmarks find `../shared`: the folder beside the repository that holds public data
(MATH-500, GSM8K, AIME, ProcessBench), the synthetic-results generator and the DAG skeleton.

It is not part of the repository (tests never need it); docs/architecture.md says what lives there.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def shared_file(relative: str) -> Path:
    """`../shared/<relative>`, or SystemExit with one line saying what is missing."""
    path = SHARED / relative
    if not path.exists():
        raise SystemExit(f"this benchmark reads {path} (../shared beside the repository), which is missing")
    return path
