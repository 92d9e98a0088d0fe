"""The prepare stage: the input made sure of (generated only where asked), fingerprinted, and the plan of a run."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import pandas as pd

from encore.config import Settings, redact
from encore.io import lake, legacy, synth
from encore.job import ingest as ingest_mod

log = logging.getLogger("encore")


@dataclass
class Prepared:
    """What the run reads: whether it generated it now, whether it is synthetic, and its fingerprint."""

    generated: bool
    synthetic: bool
    fingerprint: str


def run(settings: Settings) -> Prepared:
    """Check (or, for a synthetic lake not there yet, generate) the input and fingerprint it."""
    generated = ensure_lake(settings)
    return Prepared(generated, is_synthetic(settings), fingerprint(settings))


def ensure_lake(settings: Settings) -> bool:
    """Generate the synthetic marketplace when the settings call the lake synthetic and its folder does not
    exist at all; True if it did.

    Any other lake is input, never written to: a missing or incomplete one is an
    :class:`~encore.errors.InputError` naming what is missing, before any work starts.
    """
    if settings.lake.legacy_csv:
        return False
    fs, root = lake.filesystem(settings.lake.path, settings.lake.storage_options)
    if settings.lake.synthetic and not fs.exists(root):
        log.info("%s does not exist: generating a synthetic marketplace there (%d users, %d days)",
                 settings.lake.path, settings.synth.users, settings.synth.days)
        synth.write_lake(settings.synth, fs, root)
        return True
    lake.check_lake(fs, root)
    return False


def is_synthetic(settings: Settings) -> bool:
    """Whether the run reads a marketplace encore generated (its lake carries the synthetic marker)."""
    if settings.lake.legacy_csv:
        return False
    fs, root = lake.filesystem(settings.lake.path, settings.lake.storage_options)
    return synth.is_synthetic(fs, root)


def plan(settings: Settings) -> dict[str, Any]:
    """What a run would read, where it would compute and write, without computing anything."""
    inputs: dict[str, Any]
    if settings.lake.legacy_csv:
        fs, path = lake.filesystem(settings.lake.legacy_csv, settings.lake.storage_options)
        inputs = {"legacy_csv": settings.lake.legacy_csv, "exists": fs.exists(path)}
    else:
        fs, root = lake.filesystem(settings.lake.path, settings.lake.storage_options)
        generate = settings.lake.synthetic and not fs.exists(root)
        if not generate:
            lake.check_lake(fs, root)
        found = [] if generate else lake.bid_days(fs, root)
        days = [d for d in found if d <= ingest_mod.latest_day(settings)]
        inputs = {"lake": settings.lake.path, "bid_days": len(days),
                  "first_day": str(days[0]) if days else None, "last_day": str(days[-1]) if days else None,
                  "ignored_future_days": [str(d) for d in found if d not in days],
                  "synthetic": generate or synth.is_synthetic(fs, root),
                  "action": f"generate a synthetic marketplace ({settings.synth.users} users)" if generate else "read"}
        if days:
            window = ingest_mod.resolve_window(settings, days)
            inputs["window"] = [str(window.start.date()), str((window.end - pd.Timedelta(days=1)).date())]
    out_fs, out_root = lake.filesystem(settings.output.path, settings.output_storage_options())
    latest = lake.join(out_root, "LATEST")
    cluster = settings.cluster.model_dump(include={"kind", "address", "n_workers", "threads_per_worker"})
    return redact({"inputs": inputs, "cluster": cluster,
                   "output": {"path": settings.output.path, "shards": settings.output.shards,
                              "strict": settings.output.strict,
                              "current_latest": out_fs.cat(latest).decode() if out_fs.exists(latest) else None}})


def fingerprint(settings: Settings) -> str:
    """A hash of the input files' names and checksums (the legacy CSV's bytes), so a manifest says exactly
    what was read."""
    if settings.lake.legacy_csv:  # read whole (a small file): a missing or unreadable one is a clear error here
        return hashlib.sha256(legacy.read_bytes(settings.lake.legacy_csv, settings.lake.storage_options)).hexdigest()
    fs, root = lake.filesystem(settings.lake.path, settings.lake.storage_options)
    paths = sorted(fs.find(root))
    digest = hashlib.sha256()
    for p in paths:
        digest.update(f"{p}:{fs.size(p)}:{fs.checksum(p)}\n".encode())
    return digest.hexdigest()
