"""Typed settings for every stage: a YAML file plus ``ENCORE_*`` environment overrides.

Settings are loaded explicitly by :func:`load_settings` (never at import) and validated up front, so a bad
value stops the run before any work with one line naming the field. Every field is documented where it is
defined; ``docs/configuration.md`` is generated from these classes.

Environment overrides: ``ENCORE_<SECTION>__<FIELD>=value`` (double underscore between levels), e.g.
``ENCORE_CLUSTER__KIND=address``. Short forms for the common ones: ``ENCORE_LAKE``, ``ENCORE_OUTPUT``,
``ENCORE_SCHEDULER`` and ``ENCORE_PG_DSN``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from encore.errors import ConfigError

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "local.yaml"
ENV_PREFIX = "ENCORE_"
ENV_SHORTCUTS = {
    "ENCORE_LAKE": ("lake", "path"),
    "ENCORE_OUTPUT": ("output", "path"),
    "ENCORE_SCHEDULER": ("cluster", "address"),
    "ENCORE_PG_DSN": ("extract", "dsn"),
}


MASK = "***"
_SECRET_KEY = re.compile(r"secret|password|passwd|token|credential|private|api_?key|access_?key|^key$|dsn|"
                         r"session|signature|auth", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@?#\s]*):(?P<pw>[^@/?#\s]*)@", re.IGNORECASE)
_KV_SECRET = re.compile(r"(?P<head>\b(?:password|secret|token|sslpassword)\s*=\s*)(?P<value>'[^']*'|\S+)",
                        re.IGNORECASE)


def redact_text(text: str) -> str:
    """``text`` with URL passwords (``scheme://user:pw@``) and ``password=…`` style values masked."""
    text = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{MASK}@", text)
    return _KV_SECRET.sub(lambda m: m.group("head") + MASK, text)


def redact(value: Any, key: str = "") -> Any:
    """``value`` (settings, a manifest, a plan: nested dicts, lists, strings) with every secret masked.

    The one place secrets are removed before anything is written or printed: values under keys that
    name a secret (secret, key, password, token, dsn, credentials, …) become ``***`` whatever they
    hold, and every other string has URL passwords and ``password=…`` pairs masked.
    """
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, key) for v in value]
    if key and _SECRET_KEY.search(key) and value not in (None, "", False):
        return MASK
    return redact_text(value) if isinstance(value, str) else value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class LakeSettings(_Section):
    """Where the input lake lives and how to reach it."""

    path: str = Field("data/lake", description="Lake root: a local folder or an fsspec URL such as s3://bucket/lake.")
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec storage options passed to every reader and writer (e.g. endpoint_url, anon, profile).",
    )
    legacy_csv: str | None = Field(
        None, description="Read this legacy aggregate CSV (uid, userName, catagory, …) instead of the lake."
    )
    synthetic: bool = Field(
        False, description="This lake is encore's synthetic marketplace: generate it when the folder does not exist. "
        "A lake path given on the command line or in the environment is never synthetic unless --synthetic (or "
        "ENCORE_LAKE__SYNTHETIC) says so, so a typo cannot turn into generated data; an existing folder is never "
        "written to.")


class OutputSettings(_Section):
    """Where runs are published."""

    path: str = Field("out", description="Output root: runs/<run_id>/ and the LATEST pointer are written here.")
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="fsspec storage options for the output root (defaults to the lake's)."
    )
    shards: int = Field(16, ge=1, le=4096, description="Number of per-user recommendation shards.")
    keep_runs: int = Field(7, ge=1, description="Published runs to keep; older run folders are deleted.")
    strict: bool = Field(
        False, description="A run that would serve nothing (no live listings, no users, no lists) or whose "
        "recommendations fell below half of the published run's is written but not published, and the "
        "command exits with status 3. Off: such a run is published with a warning.")


class ClusterSettings(_Section):
    """Which Dask cluster to run on."""

    kind: Literal["local", "address", "ec2", "coiled"] = Field(
        "local", description="local: a LocalCluster on this machine; address: an existing scheduler; ec2 / coiled."
    )
    address: str | None = Field(None, description="Scheduler address (tcp://host:8786) when kind is address.")
    n_workers: int | None = Field(None, ge=1, description="Workers (local: defaults to the number of cores).")
    threads_per_worker: int = Field(1, ge=1, description="Threads per worker; kernels release the GIL.")
    processes: bool | None = Field(
        None, description="local: worker processes (true), threads in this process (false), or unset: threads "
        "for a run whose input is smaller than in_process_below_mb (no worker processes to start), processes above.")
    in_process_below_mb: float = Field(
        256.0, ge=0, description="local, processes unset: input (bid files, or the legacy CSV) below this many MB "
        "runs on threads in this process; 0 always starts worker processes. Measured in docs/benchmarks.md.")
    memory_limit: str = Field("auto", description="Memory limit per worker, e.g. '4GB' or 'auto'.")
    kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Passed through to the cluster class (EC2Cluster, coiled.Cluster, …)."
    )

    @model_validator(mode="after")
    def _address_needed(self) -> ClusterSettings:
        if self.kind == "address" and not self.address:
            raise ValueError("cluster.address is required when cluster.kind is 'address'")
        return self


class SynthSettings(_Section):
    """The synthetic marketplace generated when no data is given."""

    users: int = Field(2000, ge=10, description="Number of buyers.")
    days: int = Field(30, ge=1, description="Days of bidding, ending on end_date.")
    end_date: dt.date = Field(dt.date(2026, 11, 26), description="Last day of bids (fixed so runs reproduce).")
    seed: int = Field(42, description="Random seed: the same seed gives the same marketplace.")
    listings_per_user: float = Field(0.5, gt=0, description="Listings in the catalogue per buyer.")
    bids_per_user_day: float = Field(0.35, gt=0, description="Mean bids per buyer per day (heavy-tailed).")
    ending_pull: float = Field(2.0, ge=0, description="Sniping: a listing ending that day is picked 1 + this many "
                               "times as often as its attractiveness alone says (0: no pull).")
    snipe_share: float = Field(0.3, ge=0, le=1, description="Sniping: share of the bids on a listing ending that day "
                               "placed in its last snipe_hours.")
    snipe_hours: float = Field(2.0, gt=0, description="Sniping: the closing window, in hours, that snipes fall in.")
    price_level_spread: float = Field(0.8, ge=0, description="Price bands: standard deviation (natural log units) "
                                      "of buyers' preferred price level around each category's median price.")
    price_band_sd: float = Field(0.5, ge=0, description="Price bands: how far (natural log units) a buyer strays from "
                                 "their preferred price level; listings farther out are picked less (0: no bands).")
    seller_concentration: float = Field(1.2, gt=0, description="Sellers: Pareto shape of listings per seller (smaller: "
                                        "a few sellers hold many listings).")
    buyer_seller_share: float = Field(0.2, ge=0, le=1, description="Sellers: share of sellers that are also buyers "
                                      "(same uid); nobody bids on their own listings.")
    comeback: float = Field(0.5, ge=0, le=1, description="Outbid buyers: chance that a buyer outbid on a listing bids "
                            "on it again the next day while it runs (a higher bid than the day's top).")


class IngestSettings(_Section):
    """Validation rules applied to the input rows."""

    run_date: dt.date | None = Field(None, description="Last day of the run window; default: newest bid date.")
    window_days: int = Field(30, ge=1, description="Days of bids read, ending on run_date.")
    future_tolerance_days: int = Field(
        1, ge=0, description="Day folders dated later than today (UTC) plus this are ignored and reported: a "
        "misdated folder never becomes the default run_date.")
    max_amount: float = Field(1_000_000.0, gt=0, description="Bid amounts above this are rejected as absurd.")
    max_reject_ratio: float = Field(
        0.05, ge=0, le=1, description="Stop before publishing when more than this share of rows is rejected."
    )


class ExtractSettings(_Section):
    """Extract from the marketplace PostgreSQL into the lake."""

    dsn: SecretStr | None = Field(None, description="libpq connection string; prefer the ENCORE_PG_DSN variable.")
    db_schema: str = Field("public", description="Schema holding the marketplace tables.")
    chunk_rows: int = Field(50_000, ge=100, description="Rows fetched per round trip (server-side cursor).")
    lookback_days: int = Field(2, ge=0, description="Days before the watermark re-extracted for late bids.")
    tables: dict[str, str] = Field(default_factory=dict, description="Table name overrides: bids, listing, users…")
    columns: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="Column name overrides per table, e.g. {bids: {userId: user_id}}."
    )


class ModelSettings(_Section):
    """Interaction weights and the item-item model."""

    half_life_days: float = Field(14.0, gt=0, description="Interaction weight halves every this many days.")
    won_boost: float = Field(2.0, ge=1, description="Weight multiplier for listings the user won.")
    spend_weight: float = Field(0.5, ge=0, description="Weight of log(1 + spend / price) in the interaction.")
    history_cap: int = Field(500, ge=1, description="Most recent items per user used for similarity.")
    k: int = Field(50, ge=1, description="Neighbours kept per item.")
    min_support: int = Field(1, ge=1, description="Minimum co-bidders for a neighbour pair.")
    shrinkage: float = Field(0.0, ge=0, description="Similarity shrunk by support / (support + shrinkage).")
    weighting: Literal["none", "bm25", "iuf"] = Field(
        "bm25", description="Weighting before the similarity (bm25 won on the UCI validation window).")
    alpha: float | None = Field(
        None, ge=0, le=1, description="Similarity dot(i, j) / (|i|^2a |j|^2(1-a)): 0.5 is cosine; "
        "null is the raw dot product (with bm25: implicit's BM25Recommender, the best on UCI validation).")
    trending_days: int = Field(3, ge=1, description="Recent window for trending, compared with the one before.")
    trending_smoothing: float = Field(5.0, gt=0, description="Pseudo-count added to both trending windows.")
    kind: Literal["itemknn", "sparse_ease", "als", "sansa", "ease"] = Field(
        "sparse_ease", description="The daily job's model (docs/quality.md compares them): sparse_ease (EASE "
        "restricted to each item's k-NN support, k and weighting as above; above itemknn on UCI and on held-out "
        "data); itemknn; als (implicit's ALS); sansa (needs encore[sansa] and SuiteSparse); ease (dense, "
        "catalogues up to ease_max_items only).")
    ease_lambda: float = Field(250.0, gt=0, description="L2 regularisation of ease (tuned on UCI validation).")
    ease_max_items: int = Field(
        10_000, ge=1, description="Largest catalogue model kind ease accepts (items^2 memory, items^3 time).")
    sparse_ease_lambda: float = Field(400.0, gt=0, description="L2 regularisation of sparse_ease (tuned on UCI validation).")
    sparse_ease_support: int = Field(
        100, ge=1, description="At most this many items regress on each item in sparse_ease (a support^3 solve each).")
    sparse_ease_fill: float = Field(
        2.0, ge=0, description="sparse_ease estimates the co-occurrence of a pair outside both k-NN lists as this "
        "times users(i) * users(j) / users (0: as zero).")
    popularity_power: float = Field(
        0.0, ge=0, description="ease and sparse_ease divide each score of item j by users(j)^power (0: off).")
    als_factors: int = Field(64, ge=1, description="Latent factors of als.")
    als_iterations: int = Field(15, ge=1, description="ALS sweeps of als.")
    als_regularization: float = Field(0.01, ge=0, description="L2 regularisation of als (implicit's default).")
    als_alpha: float = Field(1.0, gt=0, description="Confidence = als_alpha * interaction weight in als.")
    sansa_lambda: float = Field(250.0, gt=0, description="L2 regularisation of sansa.")
    sansa_density: float = Field(0.01, gt=0, le=1, description="Share of items x items entries sansa keeps per factor.")


class RecommendSettings(_Section):
    """What each user receives."""

    n: int = Field(20, ge=1, le=500, description="Recommendations per user.")
    similar_n: int = Field(20, ge=1, description="Similar items published per listing.")
    personalize_export: bool = Field(
        False, description="Also write each shard's lists as AWS Personalize batch-inference JSON Lines "
        "(personalize/shard-NNNNN.jsonl), listed in the manifest.")


class RuleFilter(_Section):
    """One business rule (an entry of rules.filters): listings matching all its conditions are kept or dropped."""

    action: Literal["include", "exclude"] = Field(..., description="include: only matching listings may be "
                                                  "recommended; exclude: matching listings never are.")
    category: list[str] | None = Field(None, min_length=1, description="Categories matched (exact names).")
    sub_category: list[str] | None = Field(None, min_length=1, description="Sub-categories matched (exact names, "
                                           "under any category).")
    seller: list[str] | None = Field(None, min_length=1, description="Seller ids matched.")
    price_min: float | None = Field(None, ge=0, description="Listings priced at least this.")
    price_max: float | None = Field(None, ge=0, description="Listings priced at most this.")
    min_age_hours: float | None = Field(None, ge=0, description="Listings started at least this many hours before "
                                        "the run.")
    max_age_hours: float | None = Field(None, ge=0, description="Listings started at most this many hours before "
                                        "the run.")

    @model_validator(mode="after")
    def _meaningful(self) -> RuleFilter:
        conditions = ("category", "sub_category", "seller", "price_min", "price_max", "min_age_hours", "max_age_hours")
        if all(getattr(self, c) is None for c in conditions):
            raise ValueError(f"a filter needs at least one of {', '.join(conditions)}")
        for lo, hi in (("price_min", "price_max"), ("min_age_hours", "max_age_hours")):
            if getattr(self, lo) is not None and getattr(self, hi) is not None and getattr(self, lo) > getattr(self, hi):
                raise ValueError(f"{lo} ({getattr(self, lo)}) is above {hi} ({getattr(self, hi)})")
        return self


class RulesSettings(_Section):
    """Auction rules applied to every user's list after scoring (see docs/quality.md, "Auction rules")."""

    enabled: bool = Field(True, description="Apply the rules below; off: lists are exactly the scored and backed-off "
                          "ones (no outbid table).")
    pool: int = Field(3, ge=1, le=20, description="Candidates per list slot the rules choose from (pool x "
                      "recommend.n, the scored list continued).")
    serve_after_hours: float = Field(1.0, ge=0, description="Lists are read from this many hours after the end of "
                                     "the run window; listings ending before that are never recommended.")
    ending_soon_hours: float = Field(24.0, gt=0, description="Listings ending within this many hours of serving are "
                                     "boosted, the sooner the more.")
    ending_soon_boost: float = Field(0.5, ge=0, description="Largest boost of a listing about to end: its relevance "
                                     "times 1 + this, falling to 1 at ending_soon_hours (0: off).")
    price_band_width: float = Field(1.5, gt=0, description="A user's price band: the mean of log(bid amount) over their "
                                    "history plus or minus this many standard deviations.")
    price_band_min_width: float = Field(0.5, ge=0, description="Smallest half-width of a price band, natural log units.")
    price_band_damping: float = Field(1.0, ge=0, description="A candidate d log units outside the user's band has its "
                                      "relevance times exp(-damping x d) (0: off).")
    price_band_min_items: int = Field(3, ge=1, description="Users with fewer listings bid on have no band (untouched).")
    max_per_seller: int | None = Field(3, ge=1, description="Most listings of one seller in a list (null: no limit).")
    exclude_own_listings: bool = Field(True, description="Never recommend a user their own listings (the listing's "
                                       "seller_id is the user's uid).")
    outbid_table: bool = Field(True, description="Publish outbid/shard-NNNNN.parquet: per user, live listings they bid "
                               "on where someone else holds the top bid, with their bid and the top bid as ratios of "
                               "the price.")
    outbid_slots: int = Field(0, ge=0, le=500, description="Reserve up to this many slots at the top of each list for "
                              "the user's outbid listings, soonest ending first (source outbid).")
    filters: list[RuleFilter] = Field(default_factory=list, description="Business rules, each include or exclude "
                                      "listings by category, sub_category, seller, price_min/price_max, "
                                      "min_age_hours/max_age_hours.")
    exclusions: bool = Field(True, description="Apply the per-user exclusion table <lake>/exclusions/*.parquet (uid and "
                             "listing_id or category) when the lake has one.")
    mmr_lambda: float | None = Field(None, ge=0, le=1, description="Maximal marginal relevance re-rank: lambda x "
                                     "relevance - (1 - lambda) x the largest item-item similarity to what the list "
                                     "holds (null: off; 1: relevance only).")


class GuardSettings(_Section):
    """The publish guard: checks a run must pass before ``LATEST`` moves to it (see docs/runs.md)."""

    enabled: bool = Field(True, description="Check every run against the published one before publishing; a run "
                          "that fails is written in full but not published (exit 4). --no-guard turns it off.")
    min_rows_ratio: float = Field(0.5, ge=0, le=1, description="Fail when recommendation rows fall below this share "
                                  "of the published run's.")
    min_coverage_ratio: float = Field(0.5, ge=0, le=1, description="Fail when catalogue coverage falls below this "
                                      "share of the published run's.")
    min_overlap: float = Field(0.05, ge=0, le=1, description="Fail when the mean Jaccard overlap of the lists of "
                               "users in both runs falls below this.")
    newest_day_bids: bool = Field(True, description="Fail when the window's newest day has no valid bid (a missing "
                                  "or broken extract of yesterday).")


class EvaluateSettings(_Section):
    """Quality tracking: a backtest of every run on its own newest day."""

    daily_holdout: bool = Field(
        False, description="The daily job also fits its model on the run window minus its newest day and scores "
        "that day (NDCG@k, hit rate@k, catalogue coverage) as `encore evaluate` does, into the manifest's backtest.")
    k: int = Field(10, ge=1, le=500, description="List length the daily holdout backtest is scored at.")


class Settings(_Section):
    """All of encore's settings. Load with :func:`load_settings`."""

    lake: LakeSettings = Field(default_factory=LakeSettings)
    output: OutputSettings = Field(default_factory=OutputSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    synth: SynthSettings = Field(default_factory=SynthSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    extract: ExtractSettings = Field(default_factory=ExtractSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    recommend: RecommendSettings = Field(default_factory=RecommendSettings)
    rules: RulesSettings = Field(default_factory=RulesSettings)
    evaluate: EvaluateSettings = Field(default_factory=EvaluateSettings)
    guard: GuardSettings = Field(default_factory=GuardSettings)

    def output_storage_options(self) -> dict[str, Any]:
        """Storage options for the output root: its own, else the lake's."""
        return self.output.storage_options or self.lake.storage_options

    def public_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready data with secrets masked, for manifests, logs and reports."""
        return redact(self.model_dump(mode="json"))


def _set_path(tree: dict[str, Any], keys: tuple[str, ...], value: Any) -> None:
    for key in keys[:-1]:
        tree = tree.setdefault(key, {})
    tree[keys[-1]] = value


def env_overrides(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Nested overrides from ``ENCORE_*`` variables (values parsed as YAML scalars)."""
    environ = dict(os.environ if environ is None else environ)
    tree: dict[str, Any] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        keys = ENV_SHORTCUTS.get(name) or tuple(k.lower() for k in name[len(ENV_PREFIX):].split("__"))
        if len(keys) < 2:
            continue
        value = raw if keys == ("extract", "dsn") else yaml.safe_load(raw) if raw else None
        _set_path(tree, keys, value)
    return tree


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _one_line(err: ValidationError) -> str:
    first = err.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "settings"
    got = first.get("input")
    shown = "" if isinstance(got, dict) or "dsn" in field else f" (got {got!r})"
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"config error: {field}: {first['msg']}{shown}{more}"


def load_settings(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Read YAML (default ``config/local.yaml``), apply env then explicit overrides, validate.

    Raises :class:`ConfigError` with one line naming the bad field.
    """
    source = Path(path) if path else DEFAULT_CONFIG
    data: dict[str, Any] = {}
    if path or source.exists():
        try:
            data = yaml.safe_load(source.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"config error: file not found: {source}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config error: {source} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config error: {source} must hold a mapping of sections")
    later = _merge(env_overrides(environ), overrides or {})
    data = _merge(data, later)
    if "path" in later.get("lake", {}) and "synthetic" not in later.get("lake", {}):
        data["lake"]["synthetic"] = False  # a lake named outside the file that declares it synthetic is real
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None


def _env_name(section: str, name: str) -> str:
    if section.endswith("[]"):
        return "(YAML only)"
    short = {v: k for k, v in ENV_SHORTCUTS.items()}.get((section, name))
    full = f"{ENV_PREFIX}{section.upper()}__{name.upper()}"
    return f"`{full}`" + (f" or `{short}`" if short else "")


def config_reference() -> str:
    """The configuration reference (docs/configuration.md), generated from the settings classes."""
    lines = ["# Configuration reference", "",
             "Generated from `encore/config.py` by `encore.config.config_reference()`; a test keeps it current.",
             ("Settings come from a YAML file (`--config`, default `config/local.yaml`), then `ENCORE_*` "
              "environment variables, then command-line options."), ""]
    sections = [(name, field.annotation) for name, field in Settings.model_fields.items()]
    for section, model in [*sections, ("rules.filters[]", RuleFilter)]:
        lines += [f"## `{section}`", "", (model.__doc__ or "").strip(), "",
                  "| field | type | default | environment | meaning |", "|---|---|---|---|---|"]
        for name, sub in model.model_fields.items():
            default = sub.default_factory() if sub.default_factory else sub.default
            default = "required" if sub.is_required() else default
            kind = getattr(sub.annotation, "__name__", None) or str(sub.annotation).replace("typing.", "")
            kind = kind.replace("|", "\\|")
            lines.append(f"| `{name}` | `{kind}` | `{default!r}` | {_env_name(section, name)} | "
                         f"{sub.description} |")
        lines.append("")
    return "\n".join(lines)
