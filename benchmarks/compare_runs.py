"""Compare the published runs of two output roots table by table: are the recommendations, similar items,
popular tables and catalogue bit-identical?

    python benchmarks/compare_runs.py OUT_A OUT_B

Used to check that a change of code shape leaves the results alone: run ``encore run`` on the same lake
with the old and the new code into two output roots, then compare them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.parquet as pq

TABLES = ("recommendations", "similar_items", "popular", "catalogue")


def published(out: Path) -> Path:
    """The run folder ``LATEST`` names under ``out``."""
    return out / "runs" / (out / "LATEST").read_text().strip()


def differing(a: Path, b: Path) -> list[str]:
    """The tables of run ``a`` that run ``b`` lacks or holds with other contents."""
    names = sorted(p.relative_to(a) for p in a.rglob("*.parquet") if p.relative_to(a).parts[0] in TABLES)
    return [str(n) for n in names if not (b / n).exists() or not pq.read_table(a / n).equals(pq.read_table(b / n))]


if __name__ == "__main__":
    run_a, run_b = (published(Path(p)) for p in sys.argv[1:3])
    bad = differing(run_a, run_b)
    for name in bad:
        print("differs:", name)
    print(f"{'identical' if not bad else f'{len(bad)} tables differ'}: {run_a} vs {run_b}")
    sys.exit(1 if bad else 0)
