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


def _constant_parts(node) -> list[str]:
    """The literal text of a message expression (an f-string's constant parts, a string's whole text)."""
    import ast

    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [v.value for v in node.values if isinstance(v, ast.Constant)]
    if isinstance(node, ast.BinOp):
        return _constant_parts(node.left) + _constant_parts(node.right)
    return []


def test_troubleshooting_lists_every_error_a_user_can_meet():
    import ast

    doc = (ROOT / "docs" / "troubleshooting.md").read_text()
    user_errors = {"InputError", "EmptyRunError", "RejectRatioError", "NoPublishedRun", "PublishError", "ClusterError"}
    missing = []
    for path in sorted((ROOT / "encore").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args and \
                    getattr(node.exc.func, "id", None) in user_errors:
                parts = [p.strip(" :;()") for p in _constant_parts(node.exc.args[0])]
                longest = max(parts, key=len, default="")
                if len(longest) >= 12 and longest not in doc:
                    missing.append(f"{path.relative_to(ROOT)}:{node.lineno}: {longest!r}")
    assert not missing, "docs/troubleshooting.md lacks:\n" + "\n".join(missing)
