import subprocess
import sys
from pathlib import Path

import yaml

from tests.helpers import small_settings

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "daily_batch.py"


def _config(tmp_path: Path) -> Path:
    settings = small_settings(tmp_path, cluster={"processes": False, "n_workers": 1})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    return path


def _batch(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--lock", str(tmp_path / "lock"),
                           "--log", str(tmp_path / "log.txt"), *args], capture_output=True, text=True, timeout=300, check=False)


def test_publishes_and_logs(tmp_path):
    done = _batch(tmp_path, "--config", str(_config(tmp_path)))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "LATEST").exists()
    assert "published" in (tmp_path / "log.txt").read_text()


def test_second_run_while_locked_exits_75(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl,sys,time; f=open(sys.argv[1],'a'); fcntl.flock(f, fcntl.LOCK_EX); "
        "print('locked', flush=True); time.sleep(60)"), str(tmp_path / "lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        done = _batch(tmp_path, "--config", str(_config(tmp_path)))
        assert done.returncode == 75 and "another run" in done.stderr
        assert not (tmp_path / "out").exists()
    finally:
        holder.kill()


def test_bad_config_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("output: {shards: 0}\n")
    done = _batch(tmp_path, "--config", str(bad))
    assert done.returncode == 2 and "output.shards" in done.stderr
