"""Validation helpers shared by every input reader: reject rows with a reason, count, never lose a row."""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from encore import schema
from encore.errors import RejectRatioError

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
PII_COLUMNS = ("user_name", "userName")


@dataclass
class Window:
    """The run's time window: bids with ``start <= created_at < end`` are in."""

    start: pd.Timestamp
    end: pd.Timestamp

    @classmethod
    def ending(cls, run_date: dt.date, days: int) -> Window:
        """``days`` whole days ending with ``run_date``."""
        end = pd.Timestamp(run_date) + pd.Timedelta(days=1)
        return cls(end - pd.Timedelta(days=days), end)


@dataclass
class IngestResult:
    """What ingest hands to the models: interactions, the clean catalogue, rejects and counts."""

    interactions: pd.DataFrame
    listings: pd.DataFrame
    rejects: pd.DataFrame
    counts: dict[str, Any]
    window: Window | None
    daily: pd.DataFrame | None = None  # date, bids, bidders, new_bidders (None without dates)
    rows: Any = None  # the matrix rows (matrix.Rows, or its future), when the interactions stayed in their partitions

    @property
    def has_time(self) -> bool:
        """False for the legacy extract, which carries no dates (recency rules then switch off)."""
        return self.window is not None


def blank(values: pd.Series) -> pd.Series:
    """True where a value is missing or only white space."""
    return (values.isna() | (values.astype("string").str.strip() == "")).fillna(True).astype(bool)


def has_control(values: pd.Series) -> pd.Series:
    """True where a string holds a control character other than tab, CR and LF."""
    return values.astype("string").str.contains(_CONTROL, na=False).astype(bool)


def first_reason(checks: list[tuple[str, pd.Series]], index: pd.Index) -> pd.Series:
    """The first failing rule per row (None where every rule passes).

    Rules are numbered in an int8 array and named once at the end, rather than masking an object column
    once per rule, which would cost more than the checks themselves.
    """
    code = np.zeros(len(index), np.int8)
    for number, (_, failed) in enumerate(checks, start=1):
        hit = pd.Series(failed, index=index).fillna(False).to_numpy(dtype=bool)
        code[(code == 0) & hit] = number
    names = np.array([None, *(name for name, _ in checks)], dtype=object)
    return pd.Series(names[code], index=index, dtype=object)


def records_json(frame: pd.DataFrame, mask: pd.Series) -> pd.Series:
    """The rows under ``mask`` as JSON text (personal columns dropped), None elsewhere."""
    out = pd.Series(None, index=frame.index, dtype=object)
    picked = mask.to_numpy(dtype=bool)
    if picked.any():
        kept = frame.loc[picked].drop(columns=[c for c in PII_COLUMNS if c in frame.columns])
        out[picked] = [json.dumps(r, default=str, ensure_ascii=False) for r in kept.to_dict("records")]
    return out


def reject_frame(source: str, rows: pd.Series, reasons: pd.Series, records: pd.DataFrame) -> pd.DataFrame:
    """Rejects in the published shape: source, row, reason, record (personal columns dropped)."""
    text = records_json(records, pd.Series(True, index=records.index))
    return pd.DataFrame({"source": source, "row": rows.astype(str).to_numpy(),
                         "reason": reasons.astype(str).to_numpy(), "record": text.to_numpy()},
                        columns=schema.REJECT_COLUMNS)


def count_source(source: str, rows_in: int, rejects: pd.DataFrame) -> dict[str, Any]:
    """Row accounting of one source: in, accepted, rejected and rejected by reason."""
    mine = rejects[rejects["source"] == source]
    return {"rows_in": rows_in, "rows_accepted": rows_in - len(mine), "rows_rejected": len(mine),
            "by_reason": {str(k): int(v) for k, v in mine["reason"].value_counts().sort_index().items()}}


def summarize(per_source: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Overall counts plus the per-source detail; fails loudly if a row was lost."""
    total = {k: sum(v[k] for v in per_source.values()) for k in ("rows_in", "rows_accepted", "rows_rejected")}
    if total["rows_in"] != total["rows_accepted"] + total["rows_rejected"]:
        raise AssertionError(f"row accounting broken: {total}")
    return {**total, "sources": per_source}


def check_reject_ratio(counts: dict[str, Any], max_ratio: float, rejects: str = "the unpublished run folder") -> None:
    """Raise :class:`RejectRatioError` when too large a share of rows was rejected; ``rejects`` says where the
    reject rows were written."""
    ratio = counts["rows_rejected"] / max(1, counts["rows_in"])
    if ratio > max_ratio:
        raise RejectRatioError(
            f"{counts['rows_rejected']} of {counts['rows_in']} input rows rejected ({ratio:.1%}), above "
            f"ingest.max_reject_ratio={max_ratio:.1%}; the rejects are in {rejects}")
