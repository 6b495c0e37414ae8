"""bench/serve_load.py, small: client processes with many concurrent requests against one `sal serve-prm`
whose queue is too short for them get every answer exactly once (503s retried), with no duplicates."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_every_request_is_answered_exactly_once_under_load() -> None:
    argv = [sys.executable, str(REPO / "bench" / "serve_load.py"), "--clients", "2", "--in-flight", "32"]
    argv += ["--requests", "300", "--max-queue", "4", "--time-limit", "120"]
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    )
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert "answered exactly once: 300/300; errors: 0" in result.stdout
    retried = int(re.search(r"503 answers retried: (\d+)", result.stdout).group(1))
    assert retried > 0 and "(duplicates: 0)" in result.stdout  # the queue bound was reached, and held
