"""The ``encore`` command: parses arguments, loads settings and calls the pipeline. Nothing else.

Errors print one line (``error: …``) and exit non-zero; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import atexit
import functools
import gc
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from encore.config import Settings, load_settings
from encore.errors import EncoreError

EXIT_FAILED = 1


def _setup_logging(verbose: bool) -> None:
    """Stage progress from encore on stderr; Dask's own chatter only when it is an error."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    log = logging.getLogger("encore")
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO if verbose else logging.WARNING)
    log.propagate = False
    # Dask sets its loggers' levels from its config when it is first imported (here: later, lazily), and
    # worker processes inherit the environment: so the level is set there, not on the loggers.
    for noisy in ("distributed", "bokeh", "tornado"):
        os.environ.setdefault(f"DASK_LOGGING__{noisy.upper()}", "error")
        logging.getLogger(noisy).setLevel(logging.ERROR)


def _quick_exit() -> None:
    """Spare the interpreter's final garbage collections when the command ends: they walk every object the
    command's imports and run left behind (numba, pandas, Dask; seconds after a daily run) only to free memory
    the OS takes back anyway. ``gc.freeze`` at exit moves those objects out of the collector's reach; exit
    handlers still run and objects are still released by their reference counts."""
    atexit.unregister(gc.freeze)  # once, however often the command group is invoked in one process
    atexit.register(gc.freeze)


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def guarded(func: Callable[..., Any]) -> Callable[..., Any]:
    """One clear line and a non-zero exit on error; the traceback only with --debug."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        try:
            return func(*args, **kwargs)
        except EncoreError as exc:
            if ctx.obj.get("debug"):
                raise
            _fail(str(exc), exc.exit_code)
        except (click.ClickException, click.exceptions.Exit, SystemExit):
            raise
        except Exception as exc:
            if ctx.obj.get("debug"):
                raise
            _fail(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", EXIT_FAILED)

    return wrapper


def settings_from(ctx: click.Context, **overrides: Any) -> Settings:
    """Settings from --config plus command-line overrides given as dotted keys (None = not given)."""
    tree: dict[str, Any] = {}
    for dotted, value in overrides.items():
        if value is None:
            continue
        section, key = dotted.split("__")
        tree.setdefault(section, {})[key] = value
    return load_settings(ctx.obj.get("config"), overrides=tree)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML settings (default config/local.yaml).")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.option("-q", "--quiet", is_flag=True, help="Only print results and errors.")
@click.version_option(package_name="encore")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, debug: bool, quiet: bool) -> None:
    """encore: the daily recommendation job of an auction marketplace, on Dask.

    \b
    Example:
      encore run                      # synthetic marketplace -> out/
      encore recommend <uid>          # one user's list from the latest run
    """
    ctx.obj = {"config": config_path, "debug": debug, "quiet": quiet}
    _setup_logging(not quiet)
    _quick_exit()


def _run_job(ctx: click.Context, settings: Settings, extract_first: bool = False) -> None:
    """Run the daily job with stage progress on a terminal, then print what it published."""
    from encore.job.pipeline import run as run_pipeline

    with stage_progress(ctx) as on_stage:
        result = run_pipeline(settings, extract_first=extract_first, on_stage=on_stage)
    counts = result.manifest["counts"]
    synthetic = " (synthetic input)" if result.manifest["input"].get("synthetic") else ""
    click.echo(f"published run {result.run_id} to {result.output}{synthetic}")
    click.echo(f"rows in {counts['rows_in']:,} = accepted {counts['rows_accepted']:,} + rejected "
               f"{counts['rows_rejected']:,}; {counts['users']:,} users, {counts['items']:,} listings, "
               f"{counts['recommendations']:,} recommendations")
    click.echo("stage times: " + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items()))


@contextmanager
def stage_progress(ctx: click.Context) -> Iterator[Callable[[str], None] | None]:
    """A live line naming the running stage, when stderr is a terminal; yields the pipeline's ``on_stage``."""
    if ctx.obj.get("quiet") or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console

    with Console(stderr=True).status("starting") as status:
        yield lambda name: status.update(f"[bold]encore[/bold] {name} …")


@main.command()
@click.option("--lake", help="Lake root (folder or s3://…). It is read, never written.")
@click.option("--synthetic", is_flag=True, help="The lake is a synthetic marketplace: generate it if the folder "
              "does not exist.")
@click.option("--legacy-csv", type=click.Path(), help="Read a legacy aggregate CSV instead of the lake.")
@click.option("--output", help="Output root (folder or s3://…).")
@click.option("--scheduler", help="Address of a running Dask scheduler (tcp://host:8786).")
@click.option("--extract", "extract_first", is_flag=True, help="Extract from PostgreSQL into the lake first.")
@click.option("--strict", is_flag=True, default=None,
              help="Do not publish a run that would serve nothing; exit 3 instead.")
@click.option("--no-guard", is_flag=True, help="Publish without the publish guard's checks (backfills).")
@click.option("--dry-run", is_flag=True, help="Print the plan (inputs, cluster, outputs) without computing.")
@click.pass_context
@guarded
def run(ctx: click.Context, lake: str | None, synthetic: bool, legacy_csv: str | None, output: str | None,
        scheduler: str | None, extract_first: bool, strict: bool | None, no_guard: bool, dry_run: bool) -> None:
    """Run the whole daily job and publish it atomically.

    \b
    Example:
      encore run --lake data/lake --output out --scheduler tcp://10.0.0.5:8786
      ENCORE_PG_DSN=postgresql://… encore run --extract
    """
    from encore.job.prepare import plan

    settings = settings_from(ctx, lake__path=lake, lake__synthetic=synthetic or None, lake__legacy_csv=legacy_csv,
                             output__path=output, output__strict=strict, guard__enabled=False if no_guard else None,
                             cluster__address=scheduler,
                             cluster__kind="address" if scheduler else None)
    if dry_run:
        click.echo(json.dumps(plan(settings), indent=2))
        return
    _run_job(ctx, settings, extract_first)


@main.command()
@click.option("--lake", help="Where the synthetic marketplace lives (default: the config's lake).")
@click.option("--output", help="Output root (folder or s3://…).")
@click.pass_context
@guarded
def demo(ctx: click.Context, lake: str | None, output: str | None) -> None:
    """The daily job on a synthetic marketplace, generated first when its folder does not exist.

    \b
    Example:
      encore demo                     # data/lake -> out/
    """
    _run_job(ctx, settings_from(ctx, lake__path=lake, lake__synthetic=True, output__path=output))


@main.command()
@click.option("--lake", help="Lake root to write (default from config).")
@click.option("--users", type=int, help="Number of buyers.")
@click.option("--days", type=int, help="Days of bidding.")
@click.option("--seed", type=int, help="Random seed.")
@click.option("--to-postgres", "dsn", help="Load into this PostgreSQL database instead of the lake.")
@click.option("--replace", is_flag=True, help="With --to-postgres: replace existing marketplace tables.")
@click.pass_context
@guarded
def synth(ctx: click.Context, lake: str | None, users: int | None, days: int | None, seed: int | None,
          dsn: str | None, replace: bool) -> None:
    """Generate a synthetic marketplace into the lake (or a PostgreSQL database).

    \b
    Example:
      encore synth --lake data/big --users 100000 --days 30
      encore synth --to-postgres "host=127.0.0.1 dbname=test user=postgres"
    """
    from encore.io import synth as synth_mod
    from encore.io.lake import filesystem

    settings = settings_from(ctx, lake__path=lake, synth__users=users, synth__days=days, synth__seed=seed)
    if dsn:
        from encore.io.pgload import load_marketplace

        rows = load_marketplace(dsn, synth_mod.Marketplace(settings.synth), schema=settings.extract.db_schema,
                                replace=replace)
        click.echo("loaded " + ", ".join(f"{n:,} {table}" for table, n in rows.items()))
        return
    fs, root = filesystem(settings.lake.path, settings.lake.storage_options)
    with click.progressbar(length=settings.synth.days, label="generating days", file=sys.stderr) as bar:
        counts = synth_mod.write_lake(settings.synth, fs, root, on_day=lambda day, n: bar.update(1))
    click.echo(f"wrote {counts['bids']:,} bids, {counts['listings']:,} listings, {counts['users']:,} users "
               f"to {settings.lake.path}")


def reader_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--output`` and ``--json``: the options of the commands that read the latest published run."""
    func = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(func)
    return click.option("--output", help="Output root (default from config).")(func)


def _store(ctx: click.Context, output: str | None):
    from encore.io.store import RecommendationStore

    settings = settings_from(ctx, output__path=output)
    return RecommendationStore(settings.output.path, settings.output_storage_options())


def _print_frame(frame, as_json: bool, title: str | None = None) -> None:
    """JSON records for machines; for people a table (drawn on a terminal, plain aligned text in a pipe)."""
    if as_json:
        click.echo(frame.to_json(orient="records", date_format="iso"))
        return
    cells = frame.apply(lambda column: column.map(_cell)) if len(frame) else frame
    if not sys.stdout.isatty():
        click.echo((f"{title}\n" if title else "") + cells.to_string(index=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in cells.columns:
        table.add_column(str(column), overflow="fold")
    for row in cells.itertuples(index=False):
        table.add_row(*row)
    Console().print(table)


def _cell(value: Any) -> str:
    """One value as a person reads it: no NaN, 4 significant digits, times to the minute."""
    import pandas as pd

    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
        return ""
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)


def readable(recs, catalogue):
    """A list with each listing's title, category, price and end time, and the title of its ``because``."""
    if catalogue is None:
        return recs
    info = catalogue.set_index("listing_id")
    shown = recs.join(info[["title", "category", "sub_category", "price", "ends_at"]], on="item_id")
    shown["because_title"] = shown["because"].map(info["title"])
    return shown[["rank", "title", "category", "sub_category", "price", "ends_at", "source", "because_title",
                  "score", "item_id"]]


@main.command()
@click.argument("uid")
@reader_options
@click.pass_context
@guarded
def recommend(ctx: click.Context, uid: str, output: str | None, as_json: bool) -> None:
    """Print one user's recommendations from the latest published run.

    \b
    Example:
      encore recommend 7ec3c81f-4340-428c-89d4-8f2dbe17d8a1 --json
    """
    store = _store(ctx, output)
    recs = store.for_user(uid)
    if as_json:
        _print_frame(recs, True)
        return
    if recs.empty:
        why = "; ".join(store.manifest.get("warnings", [])) or "no list was made for this user"
        click.echo(f"run {store.run_id} has no recommendations for {uid}: {why}", err=True)
        return
    if bool(recs["cold_start"].any()):
        click.echo(f"{uid} has no history in this run: showing the cold-start list", err=True)
    _print_frame(readable(recs, store.catalogue()), False, title=f"{uid} (run {store.run_id})")


@main.command()
@click.argument("item_id", type=int)
@reader_options
@click.pass_context
@guarded
def similar(ctx: click.Context, item_id: int, output: str | None, as_json: bool) -> None:
    """Print the listings most similar to ITEM_ID from the latest run.

    \b
    Example:
      encore similar 100007
    """
    store = _store(ctx, output)
    table = store.similar(item_id)
    if as_json:
        _print_frame(table, True)
    elif table.empty:
        click.echo(f"listing {item_id} has no similar items in this run", err=True)
    else:
        _print_frame(similar_readable(table, store.catalogue()), False, title=f"listings like {item_id}")


def similar_readable(table, catalogue):
    """Similar items with each neighbour's title, category and price (as published in the run's catalogue)."""
    if catalogue is None:
        return table
    info = catalogue.set_index("listing_id")[["title", "category", "price"]]
    shown = table.join(info, on="neighbour_id")
    return shown[["rank", "title", "category", "price", "score", "support", "neighbour_id"]]


@main.command()
@click.argument("run_a", required=False)
@click.argument("run_b", required=False)
@reader_options
@click.pass_context
@guarded
def diff(ctx: click.Context, run_a: str | None, run_b: str | None, output: str | None, as_json: bool) -> None:
    """What changed from run RUN_A (yesterday) to RUN_B (today): users, list overlap, new listings, figures.

    RUN_B defaults to the run LATEST names, RUN_A to the complete run before it. docs/runs.md explains
    each figure.

    \b
    Example:
      encore diff                                  # the latest run against the one before
      encore diff 20261126T131500Z-1a2b3c 20261127T131500Z-3f9a1c --json
    """
    import pandas as pd

    from encore.io.lake import filesystem
    from encore.job.diff import compare, runs_to_compare

    settings = settings_from(ctx, output__path=output)
    fs, root = filesystem(settings.output.path, settings.output_storage_options())
    result = compare(fs, *runs_to_compare(fs, root, run_a, run_b))
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    summary = [("yesterday", result["yesterday"]), ("today", result["today"]),
               ("users gained", result["users_gained"]), ("users lost", result["users_lost"]),
               ("users in both", result["users_in_both"]), ("mean Jaccard", result["jaccard_mean"]),
               (f"mean RBO (p={result['rbo_p']}, depth {result['rbo_depth']})", result["rbo_mean"]),
               ("new listing share", result["new_listing_share"])]
    _print_frame(pd.DataFrame(summary, columns=["", "value"]).astype({"value": object}), False, title="run over run")
    figures = pd.DataFrame([{"figure": k, **v} for k, v in result["figures"].items()],
                           columns=["figure", "yesterday", "today", "change"])
    _print_frame(figures.astype(object), False, title="figures")


@main.command()
@click.argument("run_id")
@click.option("--force", is_flag=True, required=True, help="Publish a run the publish guard (or --strict) held back.")
@click.option("--output", help="Output root (default from config).")
@click.pass_context
@guarded
def publish(ctx: click.Context, run_id: str, force: bool, output: str | None) -> None:
    """Move LATEST to a run that was written but held back, after a person looked at it.

    \b
    Example:
      encore status                                   # names the held run and the check it failed
      encore publish 20261202T031500Z-3f9a1c --force
    """
    from encore.io.lake import filesystem
    from encore.io.store import publish_run, read_status, write_status

    settings = settings_from(ctx, output__path=output)
    fs, root = filesystem(settings.output.path, settings.output_storage_options())
    publish_run(fs, root, run_id)
    status = read_status(fs, root) or {}
    if status.get("run_id") == run_id:
        write_status(fs, root, {**status, "published": True, "forced": True})
    click.echo(f"published run {run_id} (forced) to {settings.output.path}")


@main.command()
@click.option("--output", help="Output root (default from config).")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest summary as JSON.")
@click.pass_context
@guarded
def status(ctx: click.Context, output: str | None, as_json: bool) -> None:
    """Show the latest published run: id, age, counts and completeness.

    \b
    Example:
      encore status
    """
    import pandas as pd

    from encore.io.store import read_status

    store = _store(ctx, output)
    manifest = store.manifest
    newest = read_status(store.fs, store.root)
    age = pd.Timestamp.now(tz="UTC") - pd.Timestamp(manifest["created_at"])
    summary = {"run_id": store.run_id, "created_at": manifest["created_at"],
               "age_hours": round(age.total_seconds() / 3600, 2), "complete": True,
               "synthetic_input": bool(manifest.get("input", {}).get("synthetic", False)),
               "warnings": manifest.get("warnings", []), "guard": manifest.get("guard"),
               "newest_run": newest,
               "counts": {k: v for k, v in manifest["counts"].items() if not isinstance(v, dict)},
               "timings": manifest["timings"]}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    rows = [("run", store.run_id), ("created", f"{manifest['created_at']} ({summary['age_hours']} h ago)"),
            ("input", "synthetic marketplace" if summary["synthetic_input"] else "real data")]
    rows += [("warning", w) for w in summary["warnings"]]
    if newest and not newest.get("published"):
        failed = [c["message"] for c in (newest.get("guard") or {}).get("checks", []) if not c["passed"]]
        rows += [("held back", f"run {newest['run_id']} was written but not published"),
                 *(("failed check", line) for line in failed or newest.get("warnings", [])),
                 ("to publish it", f"encore publish {newest['run_id']} --force")]
    rows += [(k.replace("_", " "), f"{v:,}" if isinstance(v, int) else str(v)) for k, v in summary["counts"].items()]
    rows += [(f"{k} time", f"{v:.1f} s") for k, v in summary["timings"].items()]
    _print_frame(pd.DataFrame(rows, columns=["", "value"]), False, title="latest published run")


@main.command()
@click.option("--output", help="Output root on S3 (default from config).")
@click.option("--expires", type=int, default=3600, show_default=True,
              help="Seconds the links stay valid (at most a week).")
@click.option("--json", "as_json", is_flag=True, help="Print {file: url} as JSON.")
@click.pass_context
@guarded
def urls(ctx: click.Context, output: str | None, expires: int, as_json: bool) -> None:
    """Print presigned HTTPS links to the latest run's manifest and shards, for readers without AWS keys.

    \b
    Example:
      encore urls --output s3://encore-data/out --expires 86400
    """
    from encore.io.s3 import presigned_urls

    settings = settings_from(ctx, output__path=output)
    links = presigned_urls(settings.output.path, settings.output_storage_options(), expires)
    click.echo(json.dumps(links, indent=2) if as_json else "\n".join(f"{k}\t{v}" for k, v in links.items()))


@main.command()
@click.option("--date", "day", help="Extract this one day (YYYY-MM-DD).")
@click.option("--since", help="Extract every day from this one (YYYY-MM-DD) to yesterday.")
@click.option("--dsn", help="PostgreSQL connection string (default: extract.dsn or ENCORE_PG_DSN).")
@click.option("--lake", help="Lake root to write (default from config).")
@click.pass_context
@guarded
def extract(ctx: click.Context, day: str | None, since: str | None, dsn: str | None, lake: str | None) -> None:
    """Extract new bids, listings and users from PostgreSQL into the lake.

    \b
    Example:
      ENCORE_PG_DSN="host=db dbname=market user=reader" encore extract
      encore extract --date 2026-11-26
    """
    from encore.io.extract import extract as run_extract

    settings = settings_from(ctx, extract__dsn=dsn, lake__path=lake)
    result = run_extract(settings, date=day, since=since)
    click.echo(json.dumps(result.to_dict(), indent=2, default=str))


@main.command()
@click.option("--run", "run_id", help="Run id to report on (default: the one LATEST names).")
@click.option("--output", help="Output root (default from config).")
@click.option("--scheduler", help="Address of a running Dask scheduler (tcp://host:8786).")
@click.pass_context
@guarded
def report(ctx: click.Context, run_id: str | None, output: str | None, scheduler: str | None) -> None:
    """Rebuild the consumer-behaviour report of a published run (`encore run` already writes one).

    \b
    Example:
      encore report                               # the latest run
      encore report --run 20261127T131500Z-3f9a1c --output s3://bucket/out
    """
    from encore.job.report import rebuild

    settings = settings_from(ctx, output__path=output, cluster__address=scheduler,
                             cluster__kind="address" if scheduler else None)
    summary = rebuild(settings, run_id)
    click.echo(f"report of run {summary['run_id']} written to {settings.output.path}/runs/{summary['run_id']}/report/")


@main.command()
@click.option("--models", "models", multiple=True,
              help="Model to compare (repeatable): popularity, trending, itemknn, itemknn-binary, itemknn-cosine, "
                   "itemknn-bm25-cosine, itemknn-k100, itemknn-shrink10, ease, sparse_ease, als, sansa (needs "
                   "encore[sansa]). Default: all but sansa. Rows give NDCG overall and by segment (test users "
                   "with 1-2, 3-10, >10 history items; new items).")
@click.option("--k", "k", type=int, default=10, show_default=True, help="Recommendations scored per user.")
@click.option("--test-days", type=int, default=7, show_default=True,
              help="Days at the end of the input held out as the test side (when bids have dates).")
@click.option("--lake", help="Lake root (folder or s3://…).")
@click.option("--legacy-csv", type=click.Path(), help="Read a legacy aggregate CSV instead of the lake.")
@click.option("--output", help="Output root; results go to <output>/evaluations/<id>/.")
@click.option("--rules", "auction_rules", is_flag=True,
              help="Compare the auction rules on and off (each alone, the defaults) instead of models.")
@click.pass_context
@guarded
def evaluate(ctx: click.Context, models: tuple[str, ...], k: int, test_days: int, lake: str | None,
             legacy_csv: str | None, output: str | None, auction_rules: bool) -> None:
    """Train models on the past of the input, score them on its last days, compare them.

    \b
    Example:
      encore evaluate --models popularity --models itemknn --models ease --k 10
      encore evaluate --legacy-csv ../shared/data/encore_bids_sample.csv
      encore evaluate --rules --test-days 3
    """
    from encore.job.evaluate import markdown_table
    from encore.job.evaluation import DEFAULT_MODELS, run_evaluation

    settings = settings_from(ctx, lake__path=lake, lake__legacy_csv=legacy_csv, output__path=output)
    if auction_rules:
        from encore.job.auction_eval import run_rules_evaluation

        rows, split, folder = run_rules_evaluation(settings, k, test_days)
    else:
        rows, split, folder = run_evaluation(settings, models or DEFAULT_MODELS, k, test_days)
    click.echo(f"split: {json.dumps(split)}\n\n{markdown_table(rows)}\n\nwritten to {folder}")
