"""Save, or check against a saved copy, every output of the item-item kernels on the benchmark matrices.

For each matrix and each model variant it fits ``ItemKNN(K=50)`` and recommends N=20 items to every user,
and keeps the neighbours, scores, support, self-scores, popularity ranks and the recommended items, scores
and ``because`` items. ``--save DIR`` writes one ``<size>_<variant>.npz`` per pair; ``--check DIR``
recomputes them with the code on ``PYTHONPATH`` and says, per array, whether it is bit-identical. Run
``--save`` with one version of the kernels and ``--check`` with another to prove a change leaves every bit
as it was::

    PYTHONPATH=OLD python benchmarks/kernel_reference.py --sizes S,M --save REF
    python benchmarks/kernel_reference.py --sizes S,M --check REF

Variants: ``cosine`` (no weighting, α = 0.5: implicit's CosineRecommender), ``default`` (the daily job's
BM25 raw dot product), ``support`` (cosine with ``min_support=2`` and ``shrinkage=10``). The exit status is
1 when any array differs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _matrices import SIZES, cached_matrix, load_matrix

VARIANTS = {
    "cosine": {"weighting": "none", "alpha": 0.5},
    "default": {},
    "support": {"weighting": "none", "alpha": 0.5, "min_support": 2, "shrinkage": 10.0},
}
N = 20


def outputs(X, variant: str) -> dict[str, np.ndarray]:
    """Every fitted array of ``ItemKNN(K=50, **VARIANTS[variant])`` on ``X`` and its top-N for every user."""
    from encore.core.itemknn import ItemKNN

    model = ItemKNN(K=50, **VARIANTS[variant]).fit(X)
    users = np.arange(X.shape[0])
    items, scores, because = model.recommend(users, X, N, return_because=True)
    out = {name: getattr(model, name) for name in ItemKNN.fitted_arrays}
    out.update(rec_items=items, rec_scores=scores, rec_because=because)
    return out


def differences(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> list[str]:
    """One line per array of ``want`` that ``got`` lacks or does not reproduce bit for bit."""
    lines = []
    for name, ref in want.items():
        new = got.get(name)
        if new is None or new.shape != ref.shape or new.dtype != ref.dtype:
            lines.append(f"{name}: shape/dtype {None if new is None else (new.shape, new.dtype)} != {ref.shape, ref.dtype}")
        elif not np.array_equal(new.view(np.uint8), ref.view(np.uint8)):
            rows = int((new != ref).reshape(len(ref), -1).any(axis=1).sum())
            lines.append(f"{name}: {rows:,} of {len(ref):,} rows differ")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="S,M", help=f"comma-separated, of {', '.join(SIZES)}")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--save", type=Path, help="folder to write the outputs to")
    action.add_argument("--check", type=Path, help="folder of saved outputs to compare with")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "encore-bench")
    args = parser.parse_args()
    failed = False
    for name in args.sizes.split(","):
        X = load_matrix(cached_matrix(name, args.cache))
        for variant in args.variants.split(","):
            start = time.perf_counter()
            got = outputs(X, variant)
            took = time.perf_counter() - start
            path = (args.save or args.check) / f"{name}_{variant}.npz"
            if args.save:
                path.parent.mkdir(parents=True, exist_ok=True)
                np.savez(path, **got)
                print(f"{name} {variant}: saved {path} ({took:.1f} s)", flush=True)
                continue
            lines = differences(got, dict(np.load(path)))
            failed |= bool(lines)
            print(f"{name} {variant}: {'DIFFERENT' if lines else 'bit-identical'} ({took:.1f} s)", flush=True)
            for line in lines:
                print("   ", line)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
