"""The whole chain from the command line: database → lake → published recommendations."""

import json

import yaml
from click.testing import CliRunner

from encore.cli import main
from tests.helpers import requires_postgres

pytestmark = requires_postgres  # every test here talks to the real server


def test_synth_to_postgres_then_run_with_extract(tmp_path, pg_dsn, pg_schema, synth_settings):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "lake": {"path": str(tmp_path / "lake")}, "output": {"path": str(tmp_path / "out"), "shards": 2},
        "cluster": {"processes": False, "n_workers": 1},
        "synth": {**synth_settings.model_dump(mode="json")},
        "extract": {"db_schema": pg_schema},
        "ingest": {"window_days": synth_settings.days},
    }))
    runner = CliRunner(env={"ENCORE_PG_DSN": pg_dsn})
    loaded = runner.invoke(main, ["--config", str(cfg), "-q", "synth", "--to-postgres", pg_dsn])
    assert loaded.exit_code == 0, loaded.output
    res = runner.invoke(main, ["--config", str(cfg), "-q", "run", "--extract"])
    assert res.exit_code == 0, res.output
    latest = (tmp_path / "out" / "LATEST").read_text()
    manifest = json.loads((tmp_path / "out" / "runs" / latest / "manifest.json").read_text())
    assert manifest["input"]["extract"] is not None and manifest["input"]["generated_synthetic"] is False
    assert manifest["counts"]["recommendations"] > 0
    assert pg_dsn not in json.dumps(manifest)
