"""``encore run`` as cron runs it: the installed ``encore`` script in its own process, on the default local
cluster sized for two workers; the lake is below ``cluster.in_process_below_mb``, so that is one worker in the
script's own process with two threads.

A published run must end with exit status 0 and a clean stderr, shutdown included (no worker heartbeat
traceback while the cluster closes, no abort while the interpreter exits); a failing run with one
``error:`` line and no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from encore.config import SynthSettings
from encore.io.lake import filesystem
from encore.io.synth import write_lake

ENCORE = str(Path(sys.executable).with_name("encore"))
RUN_TIMEOUT = 120  # seconds: far above a healthy run (~10-20 s), so only a hang trips it


def encore(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run the ``encore`` script with ``args``: no ENCORE_* variables from outside, a cluster sized for two workers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCORE_")}
    env["ENCORE_CLUSTER__N_WORKERS"] = "2"
    try:
        return subprocess.run([ENCORE, *args], check=False, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        pytest.fail(f"encore {' '.join(args)} did not end within {RUN_TIMEOUT} s; its stderr:\n{stderr}")


@pytest.fixture
def small_lake(tmp_path: Path) -> Path:
    root = tmp_path / "lake"
    fs, path = filesystem(str(root))
    write_lake(SynthSettings(users=300, days=10, seed=5), fs, path)
    return root


def test_published_run_exits_0_with_a_clean_stderr(small_lake, tmp_path):
    out = tmp_path / "out"
    proc = encore(["run", "--lake", str(small_lake), "--output", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (out / "LATEST").is_file()
    assert "published run" in proc.stdout
    for marker in ("Traceback", "ERROR", "FATAL"):
        assert marker not in proc.stderr, proc.stderr


def test_failing_run_prints_one_error_line_and_no_traceback(tmp_path):
    missing = tmp_path / "missing.csv"
    proc = encore(["run", "--legacy-csv", str(missing), "--output", str(tmp_path / "out")], tmp_path)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(missing) in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "out" / "LATEST").exists()
