"""S3 helpers that are not plain file I/O: presigned links to a published run.

Retries of transient S3 errors (503 SlowDown, throttling, dropped connections) are botocore's: set them in
the storage options, ``config_kwargs: {retries: {mode: standard, max_attempts: 8}}`` (config/s3.yaml),
and they apply on the client and on every worker, since storage options travel with each task.
"""

from __future__ import annotations

from typing import Any

from encore.io.store import MANIFEST, RecommendationStore

MAX_EXPIRES = 7 * 24 * 3600  # SigV4 presigned URLs cannot live longer than a week


def presigned_urls(out_url: str, storage_options: dict[str, Any] | None = None, expires: int = 3600,
                   run_id: str | None = None) -> dict[str, str]:
    """HTTPS links, valid ``expires`` seconds, to the manifest and every shard of the latest published run.

    They hand results to an app team without AWS credentials, as the marketplace's first pipeline did.
    """
    if not 1 <= expires <= MAX_EXPIRES:
        raise ValueError(f"expires must be between 1 and {MAX_EXPIRES} seconds (got {expires})")
    options = dict(storage_options or {})
    options["config_kwargs"] = {**options.get("config_kwargs", {}), "signature_version": "s3v4"}  # not SigV2
    store = RecommendationStore(out_url, options, run_id)
    if not hasattr(store.fs, "url"):
        raise ValueError(f"presigned links need an s3:// output, not {out_url}")
    shards = sorted(rel for rel in store.manifest["files"] if rel.startswith("recommendations/"))
    return {rel: store.fs.url(f"{store.folder}/{rel}", expires=expires) for rel in [MANIFEST, *shards]}
