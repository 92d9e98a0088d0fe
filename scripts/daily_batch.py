#!/usr/bin/env python
"""The daily job as a cron or scheduler calls it: one run at a time, a log file, meaningful exit codes.

    0  the run was published          1  the run failed (the previous run stays published)
    2  the configuration is invalid   3  output.strict: the run would serve nothing; written, not published
    4  the publish guard held the run back (written, not published; docs/runs.md)
    75 another run holds the lock (EX_TEMPFAIL: try again later)

Example crontab line (03:15 every day)::

    15 3 * * * cd /srv/encore && .venv/bin/python scripts/daily_batch.py --config config/s3.yaml
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from encore.config import load_settings
from encore.errors import ConfigError, EmptyRunError, GuardError
from encore.job.pipeline import run

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_LOCKED = 0, 1, 2, 75
log = logging.getLogger("encore")


@contextmanager
def exclusive(lock_path: Path) -> Iterator[bool]:
    """Hold an exclusive, non-blocking lock on ``lock_path``; yields False when another process has it."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def log_to(path: Path) -> None:
    """Append encore's log lines to ``path`` (the scheduler's own capture gets errors only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    for noisy in ("distributed", "bokeh", "tornado"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML settings (default config/local.yaml)")
    parser.add_argument("--lock", default="data/encore-daily.lock", help="lock file shared by all runs")
    parser.add_argument("--log", default="logs/encore-daily.log", help="log file (appended)")
    parser.add_argument("--extract", action="store_true", help="extract from PostgreSQL first")
    args = parser.parse_args(argv)
    log_to(Path(args.log))
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        log.error("%s", exc)
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    with exclusive(Path(args.lock)) as acquired:
        if not acquired:
            log.warning("another encore run holds %s; not starting", args.lock)
            print(f"another run holds {args.lock}", file=sys.stderr)
            return EXIT_LOCKED
        try:
            result = run(settings, extract_first=args.extract)
        except (EmptyRunError, GuardError) as exc:
            log.error("%s", exc)
            print(exc, file=sys.stderr)
            return exc.exit_code
        except Exception as exc:
            log.exception("run failed")
            print(f"run failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return EXIT_FAILED
    log.info("published %s (%s recommendations)", result.run_id, result.manifest["counts"]["recommendations"])
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
