"""S3 end to end against a real S3 API on loopback: moto's server behind a small fault-injecting layer.

The server runs moto's WSGI app in a thread on 127.0.0.1 (a free port), with fake credentials given only in
the storage options, so a run that works proves those options reach every reader and writer, including
worker processes. State is reset per test.
"""

from __future__ import annotations

import io
import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pandas as pd
import pytest
import s3fs
from click.testing import CliRunner
from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

from encore.cli import main
from encore.io.store import LATEST, RecommendationStore
from encore.job.pipeline import run
from tests.helpers import small_settings

BUCKET = "encore-data"
SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message></Error>")


class FaultyS3:
    """moto's S3 app, answering 503 SlowDown to every ``slow_every``-th request, or stopping the whole
    server on the first request whose path contains ``stop_on`` (as if S3 went away mid-run)."""

    def __init__(self) -> None:
        self.app = DomainDispatcherApplication(create_backend_app)
        self.server = None
        self.port = 0
        self.slow_every = 0
        self.stop_on: str | None = None
        self.requests = self.slowed = 0
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            self.requests += 1
            stop = self.stop_on is not None and self.stop_on in environ.get("PATH_INFO", "")
            slow = stop or bool(self.slow_every and self.requests % self.slow_every == 0)
            self.slowed += slow and not stop
            if stop:
                self.stop_on = None
                threading.Thread(target=self.stop).start()
        if slow:
            start_response("503 Slow Down", [("Content-Type", "application/xml")])
            return [SLOW_DOWN]
        return self.app(environ, start_response)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Serve on 127.0.0.1 (the same port again after a stop, so clients find it where they left it)."""
        self.server = make_server("127.0.0.1", self.port, self, threaded=True)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop serving and close the socket: clients now get 'connection refused'."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def reset(self) -> None:
        self.slow_every, self.stop_on, self.requests, self.slowed = 0, None, 0, 0
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")).close()


@pytest.fixture(scope="module")
def s3_server() -> Iterator[FaultyS3]:
    server = FaultyS3()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch) -> Iterator[FaultyS3]:
    """A fresh bucket; no AWS variables in the environment (credentials travel in storage options only)."""
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    if s3_server.server is None:
        s3_server.start()
    s3_server.reset()
    s3fs.S3FileSystem.clear_instance_cache()
    boto3.client("s3", endpoint_url=s3_server.endpoint, aws_access_key_id="testing",
                 aws_secret_access_key="testing", region_name="us-east-1").create_bucket(Bucket=BUCKET)
    yield s3_server
    s3fs.S3FileSystem.clear_instance_cache()


def s3_settings(tmp_path: Path, server: FaultyS3, attempts: int, **sections):
    opts = {"endpoint_url": server.endpoint, "key": "testing", "secret": "testing",
            "client_kwargs": {"region_name": "us-east-1"},
            "config_kwargs": {"retries": {"mode": "standard", "max_attempts": attempts},
                              "connect_timeout": 2, "read_timeout": 30}}
    return small_settings(tmp_path, lake={"path": f"s3://{BUCKET}/lake", "storage_options": opts},
                          output={"path": f"s3://{BUCKET}/out"}, **sections)


def write_config(tmp_path: Path, settings) -> str:
    path = tmp_path / "s3.yaml"
    path.write_text(json.dumps(settings.model_dump(mode="json")))
    return str(path)


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read()


def test_run_on_s3_with_worker_processes_and_transient_errors_then_presigned_links(tmp_path, s3):
    settings = s3_settings(tmp_path, s3, attempts=6, cluster={"processes": True, "n_workers": 1,
                                                              "threads_per_worker": 2})
    cfg = write_config(tmp_path, settings)
    s3.slow_every = 40  # every 40th request is a 503 SlowDown: retried, the run never notices
    res = CliRunner().invoke(main, ["--config", cfg, "-q", "run"])
    assert res.exit_code == 0, res.output
    assert s3.slowed >= 3, "the fault layer did not fire"
    s3.slow_every = 0

    store = RecommendationStore(settings.output.path, settings.output_storage_options())
    assert res.output.startswith(f"published run {store.run_id} to s3://{BUCKET}/out")
    manifest = store.manifest
    assert manifest["counts"]["recommendations"] > 0 and len(manifest["input"]["fingerprint"]) == 64
    shards = [f for f in manifest["files"] if f.startswith("recommendations/")]
    recs = pd.concat([store._read(f) for f in shards], ignore_index=True)
    uid = recs["uid"].iloc[0]
    assert store.for_user(uid)["item_id"].tolist() == recs[recs["uid"] == uid].sort_values("rank")["item_id"].tolist()

    links = CliRunner().invoke(main, ["--config", cfg, "-q", "urls", "--expires", "600", "--json"])
    assert links.exit_code == 0, links.output
    urls = json.loads(links.output)
    assert set(urls) == {"manifest.json", *shards}
    assert all("X-Amz-Signature=" in u and "X-Amz-Expires=600" in u for u in urls.values())
    assert json.loads(fetch(urls["manifest.json"])) == manifest
    shard = store.shard_path(uid)
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(fetch(urls[shard]))), store._read(shard))


def test_urls_help_has_an_example():
    res = CliRunner().invoke(main, ["urls", "--help"])
    assert res.exit_code == 0 and "Example" in res.output and "--expires" in res.output


def test_urls_on_a_local_output_is_a_clear_error(tmp_path):
    settings = small_settings(tmp_path)
    run_dir = tmp_path / "out" / "runs" / "r1"
    run_dir.mkdir(parents=True)
    (run_dir / "manifest.json").write_text(json.dumps({"files": {}}))
    (tmp_path / "out" / LATEST).write_text("r1")
    res = CliRunner().invoke(main, ["--config", write_config(tmp_path, settings), "-q", "urls"])
    assert res.exit_code == 1 and res.output.strip().splitlines() == [
        f"error: ValueError: presigned links need an s3:// output, not {settings.output.path}"]


def test_s3_stopped_mid_publish_leaves_the_previous_run_published(tmp_path, s3, client):
    settings = s3_settings(tmp_path, s3, attempts=2)
    first = run(settings, client=client)
    fs = s3fs.S3FileSystem(**settings.output_storage_options(), skip_instance_cache=True)
    before = {p: fs.info(p)["ETag"] for p in fs.find(f"{BUCKET}/out")}

    s3.stop_on = "/recommendations/shard-"  # the server dies on the second run's first shard upload
    cfg = write_config(tmp_path, settings.model_copy(
        update={"cluster": settings.cluster.model_copy(update={"processes": False, "n_workers": 2})}))
    res = CliRunner().invoke(main, ["--config", cfg, "-q", "run"])
    assert res.exit_code == 1
    [line] = res.output.strip().splitlines()
    assert line.startswith("error: run ") and "not published: writing s3://" in line
    assert "Could not connect to the endpoint URL" in line and f"previous run named by {LATEST} is untouched" in line

    s3.start()  # S3 is back: the first run is still the published one, every file as it was
    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem(**settings.output_storage_options(), skip_instance_cache=True)
    after = {p: fs.info(p)["ETag"] for p in fs.find(f"{BUCKET}/out") if p in before}
    assert after == before
    store = RecommendationStore(settings.output.path, settings.output_storage_options())
    assert store.run_id == first.run_id
    uid = first.recommendations["uid"].iloc[0]
    expected = first.recommendations[first.recommendations["uid"] == uid]["item_id"].tolist()
    assert store.for_user(uid)["item_id"].tolist() == expected
