"""Read the UCI "Online Retail" transactions as encore events and interactions.

The data set (Chen, D. (2015). Online Retail. UCI Machine Learning Repository, doi:10.24432/C5BW33,
CC BY 4.0) is the real-data yardstick of the quality benchmark. Rows that are not purchases (no
customer, returns, zero-price lines, cancelled invoices) are dropped with a count per reason, so the
row accounting ``rows_in == rows_kept + sum(dropped.values())`` always holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

#: Columns of the events frame ``read_uci`` returns, one row per kept transaction line.
EVENT_COLUMNS = ["invoice", "uid", "stock_code", "quantity", "unit_price", "at", "description", "country"]

#: Drop reasons in the order they are checked; a line breaking several rules counts under the first.
DROP_REASONS = ["no_customer", "cancelled", "quantity_not_positive", "price_not_positive"]

_RENAME = {
    "InvoiceNo": "invoice",
    "StockCode": "stock_code",
    "Description": "description",
    "Quantity": "quantity",
    "InvoiceDate": "at",
    "UnitPrice": "unit_price",
    "CustomerID": "uid",
    "Country": "country",
}


@dataclass
class ReadReport:
    """Row accounting of one read: every input line is either kept or dropped for one reason."""

    rows_in: int
    rows_kept: int
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def balanced(self) -> bool:
        """True when rows in == rows kept + rows dropped (the invariant tests check)."""
        return self.rows_in == self.rows_kept + sum(self.dropped.values())


def drop_reasons(raw: pd.DataFrame) -> pd.Series:
    """Name the first protocol rule each raw line breaks, or None when it is a kept purchase.

    Rules are checked in ``DROP_REASONS`` order, so a cancelled line with no customer counts as
    ``no_customer``; ``cancelled`` means the invoice number starts with C.
    """
    masks = [
        raw["CustomerID"].isna(),
        raw["InvoiceNo"].str.startswith("C").fillna(False),
        raw["Quantity"] <= 0,
        raw["UnitPrice"] <= 0,
    ]
    reasons = np.select([np.asarray(m, dtype=bool) for m in masks], DROP_REASONS, default="")
    return pd.Series(reasons, index=raw.index).replace("", None)


def read_uci(path: str | Path) -> tuple[pd.DataFrame, ReadReport]:
    """Read ``online_retail_uci.csv.gz`` into purchase events plus the row accounting.

    Events carry ``uid`` as the string of the customer number ("17850"), ``at`` as
    datetime64[ns], and the columns in ``EVENT_COLUMNS``.
    """
    raw = pd.read_csv(
        path,
        dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": "Int64"},
        parse_dates=["InvoiceDate"],
    )
    reasons = drop_reasons(raw)
    kept = raw[reasons.isna()].rename(columns=_RENAME)
    kept["uid"] = kept["uid"].astype("int64").astype(str)
    kept["at"] = kept["at"].astype("datetime64[ns]")
    report = ReadReport(
        rows_in=len(raw),
        rows_kept=len(kept),
        dropped={
            name: int(n) for name, n in reasons.value_counts().reindex(DROP_REASONS, fill_value=0).items()
        },
    )
    return kept[EVENT_COLUMNS].reset_index(drop=True), report


def item_map(events: pd.DataFrame) -> pd.Series:
    """Map stock codes to item ids: the sorted unique codes numbered 0..n-1 (reproducible)."""
    codes = np.sort(events["stock_code"].unique())
    return pd.Series(np.arange(len(codes), dtype="int64"), index=pd.Index(codes, name="stock_code"))


def to_interactions(events: pd.DataFrame, items: pd.Series | None = None) -> tuple[pd.DataFrame, pd.Series]:
    """Aggregate events into encore's interactions frame, one row per (uid, item_id).

    ``n_bids`` is the number of lines, ``spend`` the sum of quantity x unit price, ``first_at`` and
    ``last_at`` the invoice dates, ``won`` is True (each line is a purchase), ``price`` the median
    unit price and the categories are missing. Pass ``items`` (from ``item_map``) to number a subset
    of events (a train or test window) the same way as the whole; codes absent from it are dropped.
    Returns the frame and the stock code -> item_id mapping used.
    """
    items = item_map(events) if items is None else items
    ev = events.assign(
        item_id=events["stock_code"].map(items), line_spend=events["quantity"] * events["unit_price"]
    ).dropna(subset=["item_id"])
    ev["item_id"] = ev["item_id"].astype("int64")
    out = (
        ev.groupby(["uid", "item_id"], sort=True)
        .agg(
            n_bids=("invoice", "size"),
            spend=("line_spend", "sum"),
            first_at=("at", "min"),
            last_at=("at", "max"),
            price=("unit_price", "median"),
        )
        .reset_index()
    )
    out["won"] = True
    out["category"] = out["sub_category"] = pd.Series(None, index=out.index, dtype="str")
    columns = ["uid", "item_id", "n_bids", "spend", "first_at", "last_at", "won", "category", "sub_category"]
    return out[[*columns, "price"]], items
