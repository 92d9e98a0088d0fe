"""Inputs are read-only, synthetic data appears only where asked for, secrets never leave.

Every run path (the job, its dry run, the report rebuild, the evaluation, the legacy CSV) is run over
inputs whose every file is checksummed before and after.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from encore.cli import main
from encore.errors import InputError
from encore.io import synth
from encore.io.lake import filesystem
from encore.io.store import LATEST
from encore.job.pipeline import run
from encore.job.prepare import plan
from encore.job.report import rebuild
from tests.helpers import small_settings

SECRETS = ("AKIAFAKEKEY0123", "s3cr3t-value-XYZ", "pg-password-XYZ")


def checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (or of ``folder`` itself when it is a file)."""
    files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def real_lake(tmp_path_factory) -> Path:
    """A lake as a marketplace's extract would leave it: no synthetic marker (generated, then copied)."""
    root = tmp_path_factory.mktemp("lakes")
    settings = small_settings(root)
    fs, gen = filesystem(str(root / "generated"))
    synth.write_lake(settings.synth, fs, gen)
    real = root / "real"
    shutil.copytree(root / "generated", real, ignore=shutil.ignore_patterns(synth.MARKER))
    return real


def lake_copy(real_lake: Path, tmp_path: Path, drop: str | None = None) -> Path:
    target = tmp_path / "lake"
    shutil.copytree(real_lake, target)
    if drop:
        shutil.rmtree(target / drop)
    return target


def real_settings(tmp_path: Path, lake: Path, **sections):
    return small_settings(tmp_path, lake={"path": str(lake), "synthetic": False}, **sections)


@pytest.mark.parametrize("missing", ["listings", "users", "bids"])
@pytest.mark.parametrize("synthetic", [False, True])
def test_incomplete_lake_is_an_error_that_names_what_is_missing(real_lake, tmp_path, missing, synthetic, client):
    lake = lake_copy(real_lake, tmp_path, drop=missing)
    before = checksums(lake)
    settings = small_settings(tmp_path, lake={"path": str(lake), "synthetic": synthetic})
    with pytest.raises(InputError, match=missing):
        run(settings, client=client)
    assert checksums(lake) == before  # nothing generated over it, nothing touched
    assert not (tmp_path / "out" / LATEST).exists()


def test_a_lake_path_from_the_command_line_is_never_generated(tmp_path):
    cfg = tmp_path / "c.yaml"  # the config calls its own lake synthetic; --lake names another one
    cfg.write_text(json.dumps(small_settings(tmp_path, cluster={"processes": False}).model_dump(mode="json")))
    typo = tmp_path / "lak"
    res = CliRunner().invoke(main, ["--config", str(cfg), "-q", "run", "--lake", str(typo)])
    assert res.exit_code == 1 and res.output.startswith("error: ") and str(typo) in res.output
    assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output
    assert not typo.exists() and not (tmp_path / "out" / LATEST).exists()


def test_synth_refuses_a_folder_holding_real_files(real_lake, tmp_path):
    lake = lake_copy(real_lake, tmp_path)
    before = checksums(lake)
    fs, root = filesystem(str(lake))
    with pytest.raises(InputError, match="did not generate"):
        synth.write_lake(small_settings(tmp_path).synth, fs, root)
    assert checksums(lake) == before


def test_every_run_path_leaves_the_lake_untouched(real_lake, tmp_path, client):
    lake = lake_copy(real_lake, tmp_path)
    before = checksums(lake)
    settings = real_settings(tmp_path, lake)
    plan(settings)
    result = run(settings, client=client)
    assert result.manifest["input"]["synthetic"] is False
    assert result.manifest["input"]["generated_synthetic"] is False
    rebuild(settings, client=client)
    runner = CliRunner()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(real_settings(tmp_path, lake, cluster={"processes": False}).model_dump(mode="json")))
    res = runner.invoke(main, ["--config", str(cfg), "-q", "evaluate", "--models", "popularity", "--test-days", "2"])
    assert res.exit_code == 0, res.output
    assert checksums(lake) == before


def test_legacy_csv_is_read_in_place_untouched(legacy_csv, tmp_path, client):
    before = checksums(legacy_csv)
    run(small_settings(tmp_path, lake={"legacy_csv": str(legacy_csv)}), client=client)
    assert checksums(legacy_csv) == before


def test_a_generated_lake_says_so_in_the_manifest(tmp_path, client):
    result = run(small_settings(tmp_path), client=client)
    assert result.manifest["input"]["synthetic"] is True and result.manifest["input"]["generated_synthetic"] is True
    again = run(small_settings(tmp_path), client=client)  # the marker stays with the lake
    assert again.manifest["input"]["synthetic"] is True and again.manifest["input"]["generated_synthetic"] is False


def test_secrets_are_in_no_output_file_log_or_plan(real_lake, tmp_path):
    lake = lake_copy(real_lake, tmp_path)
    opts = {"key": SECRETS[0], "secret": SECRETS[1]}
    settings = real_settings(tmp_path, lake, cluster={"processes": False, "n_workers": 2},
                             extract={"dsn": f"postgresql://reader:{SECRETS[2]}@db.internal/market"})
    tree = settings.model_dump(mode="json")
    tree["lake"]["storage_options"] = opts
    tree["extract"]["dsn"] = f"postgresql://reader:{SECRETS[2]}@db.internal/market"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(tree))
    runner = CliRunner()
    for args in (["run", "--dry-run"], ["run"], ["status", "--json"], ["report"]):
        res = runner.invoke(main, ["--config", str(cfg), *args])
        assert res.exit_code == 0, res.output
        assert not any(s in res.output for s in SECRETS), args
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert any(p.name == "manifest.json" for p in written) and any(p.name == "report.html" for p in written)
    for path in written:
        data = path.read_bytes()
        assert not any(s.encode() in data for s in SECRETS), path
    manifest = json.loads(next(p for p in written if p.name == "manifest.json").read_text())
    assert manifest["settings"]["lake"]["storage_options"] == {"key": "***", "secret": "***"}
