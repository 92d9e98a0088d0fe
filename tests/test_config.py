from pathlib import Path

import pytest

from encore.config import ConfigError, load_settings


def test_default_file_loads_and_documents_every_field():
    settings = load_settings(environ={})
    assert settings.cluster.kind == "local"
    for section in type(settings).model_fields.values():
        for name, field in section.annotation.model_fields.items():
            assert field.description, f"{section.annotation.__name__}.{name} has no description"


def test_env_overrides_nested_and_shortcuts():
    env = {"ENCORE_OUTPUT__SHARDS": "32", "ENCORE_LAKE": "s3://bucket/lake", "ENCORE_SCHEDULER": "tcp://h:8786",
           "ENCORE_CLUSTER__KIND": "address", "OTHER": "x"}
    settings = load_settings(environ=env)
    assert settings.output.shards == 32
    assert settings.lake.path == "s3://bucket/lake"
    assert settings.cluster.address == "tcp://h:8786"


@pytest.mark.parametrize("env, field", [
    ({"ENCORE_CLUSTER__KIND": "mainframe"}, "cluster.kind"),
    ({"ENCORE_OUTPUT__SHARDS": "0"}, "output.shards"),
    ({"ENCORE_MODEL__HALF_LIFE_DAYS": "abc"}, "model.half_life_days"),
    ({"ENCORE_MODEL__NOPE": "1"}, "model.nope"),
])
def test_bad_value_is_one_line_naming_the_field(env, field):
    with pytest.raises(ConfigError) as err:
        load_settings(environ=env)
    message = str(err.value)
    assert "\n" not in message and field in message


def test_address_kind_needs_an_address():
    with pytest.raises(ConfigError, match="cluster.address is required"):
        load_settings(environ={"ENCORE_CLUSTER__KIND": "address"})


def test_missing_and_broken_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "none.yaml", environ={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("lake: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad, environ={})


def test_password_never_shown():
    dsn = "postgresql://app:s3cret-pw@db:5432/market"
    settings = load_settings(environ={"ENCORE_PG_DSN": dsn})
    assert settings.extract.dsn.get_secret_value() == dsn
    assert "s3cret" not in str(settings.public_dict()) and "s3cret" not in repr(settings)
    with pytest.raises(ConfigError) as err:
        load_settings(environ={"ENCORE_PG_DSN": dsn, "ENCORE_EXTRACT__CHUNK_ROWS": "1"})
    assert "s3cret" not in str(err.value)
