"""The legacy aggregate extract validated into encore input: interactions, a derived catalogue, rejects.

It has one row per (user, listing) with bid count and total amount, no dates and no catalogue: listings
are derived from (category, sub-category, title, price), every listing counts as live, and recency rules
switch off. Every data record (:func:`encore.io.legacy.read_records`) is accepted or rejected with a reason,
ragged records included.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from encore import schema
from encore.config import Settings
from encore.io.legacy import LegacyRecords, read_records
from encore.job.validate import (
    IngestResult,
    blank,
    count_source,
    first_reason,
    has_control,
    reject_frame,
    summarize,
)

TEXT = ["uid", "catagory", "sub_catagory", "product"]
CATEGORIES = ["catagory", "sub_catagory"]

BAD_ROW = "malformed_row"  # a record with more or fewer fields than the header
DUPLICATE_ROW = "duplicate_row"  # the same (uid, category, sub-category, title, price) as an earlier valid row
MAX_BIDS_PER_ROW = 1_000_000  # counts above this are absurd (one user, one listing)
_NUMBER = r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_NON_FINITE = r"[+-]?(?:inf|infinity|nan)"


def normalise_text(values: pd.Series) -> pd.Series:
    """Line breaks and tabs inside a field become one space; padding is stripped."""
    return values.astype("string").str.replace(r"[\r\n\t]+", " ", regex=True).str.strip()


def parse_numbers(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Plain decimal numbers as float64 (NaN where the text is none) and where the text spells inf or NaN.

    Only ASCII digits, an optional sign, point and exponent count: ``1e400`` parses (to inf, absurd),
    ``1,5``, ``$5`` and ``٣`` do not.
    """
    text = values.astype("string").str.strip()
    number = text.str.fullmatch(_NUMBER).fillna(False).astype(bool)
    non_finite = text.str.fullmatch(_NON_FINITE, case=False).fillna(False).astype(bool)
    return text.where(number).astype("float64"), non_finite


def validate_legacy(raw: pd.DataFrame, max_amount: float) -> tuple[pd.DataFrame, pd.Series]:
    """Typed rows and the first failed rule per row (None when valid); blank categories become ``unknown``."""
    clean = raw.copy()
    for col in TEXT:
        clean[col] = normalise_text(raw[col])
    for col in CATEGORIES:
        clean[col] = clean[col].mask(blank(clean[col]), schema.UNKNOWN_CATEGORY)
    (price, price_nf), (counts, counts_nf), (total, total_nf) = (
        parse_numbers(raw[c]) for c in ["listing_amount", "counts", "total_bid_amount"])
    with np.errstate(invalid="ignore"):
        fractional = np.isfinite(counts) & (np.mod(counts, 1) != 0)
    checks = [
        (schema.MISSING_ID, blank(clean["uid"]) | blank(clean["product"])),
        (schema.NON_FINITE, price_nf | counts_nf | total_nf),
        (schema.BAD_AMOUNT, price.isna() | counts.isna() | total.isna()),
        (schema.NEGATIVE_AMOUNT, (price < 0) | (counts < 1) | (total <= 0)),
        (schema.ABSURD_AMOUNT, (total > max_amount) | (price > max_amount) | (counts > MAX_BIDS_PER_ROW)),
        (schema.NOT_WHOLE, fractional),
        (schema.CONTROL_CHARS, pd.concat([has_control(clean[c]) for c in TEXT], axis=1).any(axis=1)),
    ]
    reason = first_reason(checks, raw.index)
    key = clean[["uid", "catagory", "sub_catagory", "product"]].assign(price=price)
    repeated = key[reason.isna()].duplicated(keep="first")
    reason[repeated[repeated].index] = DUPLICATE_ROW
    clean = clean.assign(price=price, counts=counts, total=total)
    return clean, reason


def item_ids(clean: pd.DataFrame) -> pd.Series:
    """A stable id per listing, from category, sub-category, title and price."""
    keys = (clean["catagory"].fillna("") + "|" + clean["sub_catagory"].fillna("") + "|" +
            clean["product"].fillna("") + "|" + clean["price"].astype(str))
    return keys.map(schema.stable_id).astype("int64")


def legacy_rejects(found: LegacyRecords, reason: pd.Series) -> pd.DataFrame:
    """Rejected records (invalid and ragged) in line order; ``row`` is the line a record starts on."""
    bad = reason.notna().to_numpy()
    ragged = found.ragged
    lines = np.concatenate([found.lines[bad], ragged["line"].to_numpy(np.int64)])
    parts = [reject_frame("legacy", pd.Series(found.lines[bad]), reason[bad], found.frame[bad]),
             reject_frame("legacy", ragged["line"], pd.Series(BAD_ROW, index=ragged.index), ragged[["problem"]])]
    return pd.concat(parts, ignore_index=True).iloc[np.argsort(lines, kind="stable")].reset_index(drop=True)


def ingest_legacy(settings: Settings) -> IngestResult:
    """Validate the legacy CSV into interactions and a derived all-live catalogue."""
    found = read_records(settings.lake.legacy_csv, settings.lake.storage_options)
    raw = found.frame
    clean, reason = validate_legacy(raw, settings.ingest.max_amount)
    rejects = legacy_rejects(found, reason)
    good = clean[reason.isna()].assign(item_id=lambda f: item_ids(f))
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
    counts = summarize({"legacy": count_source("legacy", len(raw) + len(found.ragged), rejects)})
    return IngestResult(inter, listings, rejects, counts, window=None)
