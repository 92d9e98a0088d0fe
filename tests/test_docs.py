"""The documentation stays true: the configuration reference is current and README snippets run."""

import re
from pathlib import Path

from encore.config import config_reference

ROOT = Path(__file__).resolve().parents[1]


def test_configuration_reference_is_current():
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == config_reference(), "regenerate: python -c 'from encore.config import config_reference'"


def test_readme_python_snippet_runs(tmp_path, monkeypatch, client):
    code = "\n".join(re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ENCORE_SYNTH__USERS", "200")
    monkeypatch.setenv("ENCORE_SYNTH__DAYS", "5")
    monkeypatch.setenv("ENCORE_INGEST__WINDOW_DAYS", "5")
    code = code.replace("result = run(settings)", "result = run(settings, client=client)")
    scope = {"client": client, "__name__": "readme"}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the README's own snippet
    assert (tmp_path / "out" / "LATEST").exists()
    assert len(scope["store"].for_user(scope["result"].recommendations["uid"].iloc[0])) > 0
    assert scope["ids"].shape == (2, 5) and (scope["again"].neighbours_ == scope["model"].neighbours_).all()
