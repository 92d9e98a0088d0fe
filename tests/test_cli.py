import json
import subprocess
import sys

from click.testing import CliRunner

from encore.cli import main
from tests.helpers import small_settings


def _config(tmp_path):
    settings = small_settings(tmp_path, cluster={"processes": False, "n_workers": 2})
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(settings.model_dump(mode="json")))
    return path


def test_run_then_recommend_status_similar(tmp_path):
    cfg = _config(tmp_path)
    runner = CliRunner()
    res = runner.invoke(main, ["--config", str(cfg), "-q", "run"])
    assert res.exit_code == 0, res.output
    assert "published run" in res.output and "rows in" in res.output
    status = runner.invoke(main, ["--config", str(cfg), "-q", "status", "--json"])
    assert status.exit_code == 0 and json.loads(status.output)["complete"] is True
    cold = runner.invoke(main, ["--config", str(cfg), "-q", "recommend", "nobody", "--json"])
    rows = json.loads(cold.output.splitlines()[-1])
    assert cold.exit_code == 0 and rows and all(r["cold_start"] for r in rows)
    item = rows[0]["item_id"]
    sim = runner.invoke(main, ["--config", str(cfg), "-q", "similar", str(item), "--json"])
    assert sim.exit_code == 0


def test_config_error_is_one_line_exit_2(tmp_path):
    res = CliRunner(env={"ENCORE_OUTPUT__SHARDS": "0"}).invoke(main, ["run"])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [("error: config error: output.shards: Input should be greater "
                                                "than or equal to 1 (got 0)")]


def test_no_published_run_is_a_clear_error(tmp_path):
    res = CliRunner().invoke(main, ["--config", str(_config(tmp_path)), "-q", "recommend", "x"])
    assert res.exit_code == 1 and "no published run" in res.output and "Traceback" not in res.output


def test_every_help_fits_a_screen_and_has_an_example():
    runner = CliRunner()
    for cmd in [[], *([name] for name in main.commands)]:
        res = runner.invoke(main, [*cmd, "--help"])
        assert res.exit_code == 0, cmd
        assert "Example" in res.output and len(res.output.splitlines()) < 40, cmd



def test_a_command_leaves_its_objects_frozen_for_the_interpreter_exit(tmp_path):
    """After a command, the exit handlers end with ``gc.freeze``: the final collections skip what it left."""
    code = ("import atexit, gc, sys\n"
            "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0))  # runs after the CLI's\n"
            "from click.testing import CliRunner\n"
            "from encore.cli import main\n"
            "print('frozen before:', gc.get_freeze_count() > 0)\n"
            "CliRunner().invoke(main, ['-q', 'status', '--output', sys.argv[1]])\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "none")], capture_output=True, text=True,
                          check=True, timeout=120)
    assert done.stdout.splitlines() == ["frozen before: False", "frozen at exit: True"], done.stderr
