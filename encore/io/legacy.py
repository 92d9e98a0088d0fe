"""The legacy aggregate extract (``uid, userName, catagory, sub_catagory, product, …``) as encore input.

It has one row per (user, listing) with bid count and total amount, no dates and no catalogue: listings
are derived from (category, sub-category, title, price), every listing counts as live, and recency rules
switch off. Real files carry quoted numbers, padded names and line breaks inside fields.
"""

from __future__ import annotations

import fsspec
import numpy as np
import pandas as pd

from encore import schema
from encore.config import Settings
from encore.validate import (
    IngestResult,
    blank,
    count_source,
    first_reason,
    has_control,
    reject_frame,
    summarize,
)

COLUMNS = ["uid", "userName", "catagory", "sub_catagory", "product", "listing_amount", "counts", "total_bid_amount"]
TEXT = ["uid", "catagory", "sub_catagory", "product"]


def read_legacy(path: str, storage_options: dict | None = None) -> pd.DataFrame:
    """Read the CSV as text, every field kept as delivered (quoted line breaks survive)."""
    with fsspec.open(path, "rb", **(storage_options or {})) as fh:
        frame = pd.read_csv(fh, dtype=str, keep_default_na=False, na_values=[""])
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: not a legacy extract, missing columns {missing}")
    return frame[COLUMNS]


def normalise_text(values: pd.Series) -> pd.Series:
    """Line breaks and tabs inside a field become one space; padding is stripped."""
    return values.astype("string").str.replace(r"[\r\n\t]+", " ", regex=True).str.strip()


def validate_legacy(raw: pd.DataFrame, max_amount: float) -> tuple[pd.DataFrame, pd.Series]:
    """Typed rows and the first failed rule per row (None when valid)."""
    clean = raw.copy()
    for col in TEXT:
        clean[col] = normalise_text(raw[col])
    price = pd.to_numeric(raw["listing_amount"].str.strip(), errors="coerce")
    counts = pd.to_numeric(raw["counts"].str.strip(), errors="coerce")
    total = pd.to_numeric(raw["total_bid_amount"].str.strip(), errors="coerce")
    key = clean[["uid", "catagory", "sub_catagory", "product"]].assign(price=price)
    checks = [
        (schema.MISSING_ID, blank(clean["uid"]) | blank(clean["product"])),
        (schema.BAD_AMOUNT, price.isna() | counts.isna() | total.isna()),
        (schema.NEGATIVE_AMOUNT, (price < 0) | (counts < 1) | (total <= 0)),
        (schema.ABSURD_AMOUNT, (total > max_amount) | (price > max_amount)),
        (schema.CONTROL_CHARS, pd.concat([has_control(clean[c]) for c in TEXT], axis=1).any(axis=1)),
    ]
    reason = first_reason(checks, raw.index)
    repeated = key[reason.isna()].duplicated(keep="first")
    reason[repeated[repeated].index] = "duplicate_row"
    clean = clean.assign(price=price, counts=counts, total=total)
    return clean, reason


def item_ids(clean: pd.DataFrame) -> pd.Series:
    """A stable id per listing, from category, sub-category, title and price."""
    keys = (clean["catagory"].fillna("") + "|" + clean["sub_catagory"].fillna("") + "|" +
            clean["product"].fillna("") + "|" + clean["price"].astype(str))
    return keys.map(schema.stable_id).astype("int64")


def ingest_legacy(settings: Settings) -> IngestResult:
    """Validate the legacy CSV into interactions and a derived all-live catalogue."""
    raw = read_legacy(settings.lake.legacy_csv, settings.lake.storage_options)
    clean, reason = validate_legacy(raw, settings.ingest.max_amount)
    bad = reason.notna()
    rejects = reject_frame("legacy", pd.Series(np.flatnonzero(bad) + 2), reason[bad], raw[bad])
    good = clean[~bad].assign(item_id=lambda f: item_ids(f))
    inter = pd.DataFrame({
        "uid": good["uid"].astype(str),
        "item_id": good["item_id"],
        "n_bids": good["counts"].astype("int64"),
        "spend": good["total"].astype("float64"),
        "max_amount": np.nan,
        "first_at": pd.NaT,
        "last_at": pd.NaT,
        "won": False,
        "category": good["catagory"].astype(str),
        "sub_category": good["sub_catagory"].astype(str),
        "price": good["price"].astype("float64"),
    })
    inter = inter.sort_values(["uid", "item_id"], kind="stable").reset_index(drop=True)
    listings = (good.drop_duplicates("item_id")
                .rename(columns={"product": "title", "catagory": "category", "sub_catagory": "sub_category"})
                .assign(listing_id=lambda f: f["item_id"], status="live", seller_id=None,
                        starts_at=pd.NaT, ends_at=pd.NaT)[[f.name for f in schema.LISTINGS]]
                .sort_values("listing_id").reset_index(drop=True))
    counts = summarize({"legacy": count_source("legacy", len(raw), rejects)})
    return IngestResult(inter, listings, rejects, counts, window=None)
