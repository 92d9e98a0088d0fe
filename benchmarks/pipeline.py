"""Scale ladder: the whole daily job on synthetic marketplaces of 1 M to 100 M bids, on 1 and 2 workers.

Each rung's lake is generated once and cached under ``data/bench/<rung>/lake`` (outside git). Every
(rung, workers) run is a fresh subprocess whose sampling thread records, per pipeline stage, the peak
RSS of the client (the LocalCluster scheduler lives in the same process), the nannies and each worker.
Results accumulate in ``data/bench/ladder.json``; the script prints the Markdown table, draws the
log-log figure ``docs/benchmarks-ladder.png`` and, with ``--write``, replaces the "Scale ladder"
section of ``docs/benchmarks.md``. ``--quick`` keeps each rung's users and catalogue but generates only
3 of the 30 days (a tenth of the bids), a smaller check of the biggest rungs.

    python benchmarks/pipeline.py --rungs 1M,5M --workers 1,2 --write
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Self

import psutil

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
FIGURE = DOCS / "benchmarks-ladder.png"
BEGIN, END = "<!-- scale-ladder:begin -->", "<!-- scale-ladder:end -->"
DAYS, QUICK_DAYS = 30, 3
BIDS_PER_USER_DAY = 0.35
RUNGS = {"1M": 1_000_000, "5M": 5_000_000, "10M": 10_000_000, "100M": 100_000_000}
STAGES = ("prepare", "ingest", "matrix", "models", "recommend", "store", "report")
SAMPLE_S = 0.25


def rung_users(bids: int) -> int:
    """Buyers that give ``bids`` bids over 30 days at the default activity."""
    return round(bids / (DAYS * BIDS_PER_USER_DAY))


def lake_dir(root: Path, rung: str, quick: bool) -> Path:
    return root / (f"{rung}-quick" if quick else rung) / "lake"


def folder_bytes(path: Path) -> int:
    """Total size of the files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def ensure_rung(root: Path, rung: str, quick: bool) -> Path:
    """Generate the rung's lake unless it is already on disk (generation is not part of the job's cost)."""
    lake = lake_dir(root, rung, quick)
    if (lake / "bids").exists():
        return lake
    days = QUICK_DAYS if quick else DAYS
    cmd = [str(Path(sys.executable).parent / "encore"), "synth", "--lake", str(lake),
           "--users", str(rung_users(RUNGS[rung])), "--days", str(days)]
    print(f"generating {rung}{' (quick)' if quick else ''}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)
    return lake


# --- one run, inside its own subprocess -----------------------------------------------------------------

class StageSampler(logging.Handler):
    """Follows the pipeline's ``[stage] started`` log lines and samples process RSS per stage.

    Roles: ``client`` (this process, which also hosts the LocalCluster scheduler and nannies) and
    ``worker`` (the largest worker process, a child of this one). Sampling from outside the workers
    keeps it free of the Dask event loop, so a busy worker is still measured.
    """

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.stage = "setup"
        self.peaks: dict[str, dict[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg.startswith("[") and msg.endswith("] started"):
            self.stage = msg[1:msg.index("]")]

    def sample(self) -> None:
        """One sample of every process in this job's tree, folded into the current stage's peaks."""
        me = psutil.Process()
        rss = {"client": me.memory_info().rss, "worker": 0}
        for child in me.children(recursive=True):
            try:
                rss["worker"] = max(rss["worker"], child.memory_info().rss)
            except psutil.NoSuchProcess:
                continue
        peak = self.peaks.setdefault(self.stage, {})
        for role, value in rss.items():
            peak[role] = max(peak.get(role, 0), value)

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.sample()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_once(lake: Path, out: Path, workers: int, days: int) -> dict[str, Any]:
    """The daily job on ``lake`` with ``workers`` single-threaded worker processes; figures as a dict."""
    from encore.config import load_settings
    from encore.pipeline import run

    settings = load_settings(overrides={
        "lake": {"path": str(lake)}, "output": {"path": str(out)},
        "ingest": {"window_days": days}, "cluster": {"n_workers": workers, "threads_per_worker": 1},
    }, environ={})
    logger = logging.getLogger("encore")
    logger.setLevel(logging.INFO)
    sampler = StageSampler()
    logger.addHandler(sampler)
    start = time.perf_counter()
    with sampler:
        result = run(settings)
    total = time.perf_counter() - start
    counts = result.manifest["counts"]
    models_s = result.timings.get("models", 0.0)
    return {
        "workers": workers, "counts": counts, "timings": result.timings, "total_s": round(total, 2),
        "peaks": sampler.peaks, "bytes_read": folder_bytes(lake / "bids"),
        "bytes_written": folder_bytes(out / "runs" / result.run_id),
        "pair_visits_per_s": counts["pair_visits"] / models_s if models_s else None,
        "load": os.getloadavg(),
    }


# --- the ladder -----------------------------------------------------------------------------------------

def measure(root: Path, rung: str, quick: bool, workers: int) -> dict[str, Any]:
    """Run one (rung, workers) in a fresh subprocess so its peak memory is its own."""
    lake = ensure_rung(root, rung, quick)
    out = lake.parent / f"out-w{workers}"
    days = QUICK_DAYS if quick else DAYS
    load_before = os.getloadavg()
    cmd = [sys.executable, __file__, "--child", json.dumps([str(lake), str(out), workers, days])]
    done = subprocess.run(cmd, check=True, cwd=REPO, capture_output=True, text=True)
    row = json.loads(done.stdout.strip().splitlines()[-1])
    key = f"{rung}-quick" if quick else rung
    return {**row, "rung": key, "load_before": load_before}


def bids_of(row: dict[str, Any]) -> int:
    """Bid rows read by the run (accepted + rejected)."""
    return int(row["counts"]["sources"]["bids"]["rows_in"])


def gb(n: float) -> str:
    return f"{n / 1e9:.2f}"


def table(rows: list[dict[str, Any]]) -> str:
    """The Markdown ladder: one line per (rung, workers), stage times, memory, bytes, pair visits."""
    head = ["rung", "bids", "users", "workers", "load 1m", "total s", *[f"{s} s" for s in STAGES],
            "peak client GB", "peak worker GB", "read MB", "written MB", "Σ deg²", "pair visits/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(rows, key=lambda r: (bids_of(r), r["workers"])):
        t = r["timings"]
        client = max(p.get("client", 0) for p in r["peaks"].values())
        worker = max(p.get("worker", 0) for p in r["peaks"].values())
        pvs = r["pair_visits_per_s"]
        cells = [r["rung"], f"{bids_of(r):,}", f"{r['counts']['users']:,}", str(r["workers"]),
                 f"{r['load'][0]:.1f}", f"{r['total_s']:.1f}", *[f"{t.get(s, 0):.1f}" for s in STAGES],
                 gb(client), gb(worker), f"{r['bytes_read'] / 1e6:.0f}", f"{r['bytes_written'] / 1e6:.0f}",
                 f"{r['counts']['pair_visits']:.3g}", f"{pvs:.3g}" if pvs else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def stage_memory(rows: list[dict[str, Any]]) -> str:
    """Peak RSS per stage (client+scheduler / largest worker), GB, for each run."""
    head = ["rung", "workers", *STAGES]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(rows, key=lambda r: (bids_of(r), r["workers"])):
        cells = [r["rung"], str(r["workers"])]
        for s in STAGES:
            p = r["peaks"].get(s)
            cells.append(f"{gb(p['client'])} / {gb(p['worker'])}" if p else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(rows: list[dict[str, Any]], path: Path) -> None:
    """Log-log wall time per stage and in total against bids, one line style per worker count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for workers, style in ((1, "--"), (2, "-")):
        mine = sorted((r for r in rows if r["workers"] == workers), key=bids_of)
        if not mine:
            continue
        x = [bids_of(r) for r in mine]
        ax.plot(x, [r["total_s"] for r in mine], style, color="black", marker="o", label=f"total, {workers} w")
        for stage in ("ingest", "models", "recommend", "store", "report"):
            ax.plot(x, [max(r["timings"].get(stage, 0), 1e-2) for r in mine], style, marker=".",
                    label=f"{stage}, {workers} w")
    lo, hi = min(map(bids_of, rows)), max(map(bids_of, rows))
    ref = max(r["total_s"] for r in rows if bids_of(r) == lo)
    ax.plot([lo, hi], [ref, ref * hi / lo], ":", color="grey", label="linear")
    ax.set(xscale="log", yscale="log", xlabel="bids", ylabel="wall time, s", title="encore daily job: cost vs bids")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_section(markdown: str, path: Path) -> None:
    """Replace (or append) the text between the scale-ladder markers; the rest of the file is untouched."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{BEGIN}\n{markdown.strip()}\n{END}"
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def load_results(path: Path) -> dict[str, dict[str, Any]]:
    return json.loads(path.read_text()) if path.exists() else {}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rungs", default="1M,5M,10M,100M")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--quick", action="store_true", help="3 days instead of 30: a tenth of each rung's bids")
    parser.add_argument("--lake-root", type=Path, default=REPO / "data" / "bench")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md and the figure")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        lake, out, workers, days = json.loads(args.child)
        print(json.dumps(run_once(Path(lake), Path(out), workers, days)))
        return
    store = args.lake_root / "ladder.json"
    results = load_results(store)
    for rung in args.rungs.split(","):
        for workers in map(int, args.workers.split(",")):
            row = measure(args.lake_root, rung, args.quick, workers)
            results[f"{row['rung']}/{workers}"] = row
            store.write_text(json.dumps(results, indent=1))
            print(f"{row['rung']} on {workers} worker(s): {row['total_s']:.1f}s, load {row['load'][0]:.1f}",
                  file=sys.stderr, flush=True)
    rows = list(results.values())
    print(table(rows))
    print()
    print(stage_memory(rows))
    if args.write:
        figure(rows, FIGURE)


if __name__ == "__main__":
    main()
