import json
from pathlib import Path

import pytest

from encore.config import MASK, load_settings, redact
from encore.errors import ConfigError


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


def test_a_lake_named_outside_the_file_is_real_unless_said_synthetic(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("lake: {path: data/lake, synthetic: true}\n")
    assert load_settings(cfg, environ={}).lake.synthetic is True
    assert load_settings(cfg, environ={"ENCORE_LAKE": "/data/real"}).lake.synthetic is False
    assert load_settings(cfg, overrides={"lake": {"path": "/data/real"}}, environ={}).lake.synthetic is False
    assert load_settings(cfg, overrides={"lake": {"path": "/x", "synthetic": True}}, environ={}).lake.synthetic
    assert load_settings(cfg, overrides={"output": {"path": "o"}}, environ={}).lake.synthetic is True


def test_redact_masks_secret_keys_and_passwords_in_text():
    tree = {"lake": {"storage_options": {"key": "AKIA1", "secret": "s", "token": "t", "anon": False,
                                         "client_kwargs": {"endpoint_url": "http://u:pw1@h:9000/x"}}},
            "extract": {"dsn": "host=db password=pw2 user=r"}, "note": "postgresql://r:pw3@db/m and password=pw4",
            "list": [{"aws_secret_access_key": "pw5"}], "empty": {"token": None}}
    out = redact(tree)
    text = json.dumps(out)
    assert not any(f"pw{i}" in text for i in range(1, 6)) and "AKIA1" not in text
    assert out["lake"]["storage_options"]["anon"] is False and out["empty"]["token"] is None
    assert out["lake"]["storage_options"]["client_kwargs"]["endpoint_url"] == "http://u:***@h:9000/x"
    assert load_settings(environ={"ENCORE_PG_DSN": "postgresql://r:pw6@db/m"}).public_dict()["extract"]["dsn"] == MASK
