"""Scale ladder: the whole daily job on synthetic marketplaces of 1 M to 100 M bids, on 1 and 2 workers.

Each rung's lake is generated once and cached under ``data/bench/<rung>/lake`` (outside git). Every
(rung, workers) run is a fresh subprocess whose sampling thread records, per pipeline stage, the peak
RSS of the client (the LocalCluster scheduler lives in the same process), the nannies and each worker.
Results accumulate in ``data/bench/ladder.json``; the script prints the Markdown table, draws the
log-log figure ``docs/benchmarks-ladder.png`` and, with ``--write``, replaces the "Scale ladder"
section of ``docs/benchmarks.md``. ``--quick`` keeps each rung's users and catalogue but generates only
3 of the 30 days (a tenth of the bids), a smaller check of the biggest rungs.

    python benchmarks/pipeline.py --rungs 1M,5M --workers 1,2 --write
    python benchmarks/pipeline.py --rungs 10M --workers 1,2,4 --memory-limit 5GB   # memory as workers are added
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
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
WORKERS_PER_INSTANCE = 2  # m6i.xlarge: 4 vCPU = 2 physical cores, 16 GiB
WORKER_PRICE = 0.192  # USD/h, m6i.xlarge on-demand, us-east-1 (assumed, late 2026 list price not checked)
CLIENT_PRICE = 2.016  # USD/h, r6i.8xlarge (256 GiB) for client + scheduler, on-demand us-east-1 (assumed)
FIXES = (
    "Measured on 2026-11-28 (commit a8e8cc9), code d614bc7..eb8d8fd (the 100M/2w row at ddcf5ab: it lacks only "
    "the report's complementary suppression and one footer read less per day file). Rows '10M (d614bc7)' are the "
    "code these changes started from, measured in the same ladder with this harness (`PYTHONPATH=<worktree>`, "
    "`--lake-root` at a link to the same lake). Rows at 1M-10M are the median of 3 runs (`--repeat 3`, range in "
    "brackets); 100M rows are one run each. What changed is robustness, not speed: data for every worker is "
    "scattered once and fetched by one small task per worker instead of `Client.scatter(broadcast=True)`, whose "
    "replication loops for ever when a worker dies mid-copy, and the fitted model is fitted again from the "
    "client's inputs when a lost worker took its scattered inputs too; both cost nothing measurable here. The CPU "
    "table below splits each stage's CPU time between the client (with the scheduler) and the workers; where "
    "1 -> 2 workers stands is in the section after the cost model."
)
COST_ASSUMPTIONS = (
    "Assumptions: T(W) = S + P/W with S and P per bid from the largest rung measured on 2 workers (S the "
    "client's CPU seconds, P the workers' summed CPU seconds: with two worker "
    "processes on two cores, P includes what they cost each other, so it is the pessimistic of the two runs), scaled linearly to 1e9 bids; "
    "two single-threaded "
    "workers per m6i.xlarge at USD 0.192/h and one r6i.8xlarge (256 GiB, USD 2.016/h) for client and "
    "scheduler, on-demand us-east-1 prices assumed, not quoted; lake read from S3 at the local-disk rate; no "
    "spot discount, no start-up time. The serial part does not shrink with workers and bounds the speed-up. "
    "Memory: the client's peak grows with bids (the interactions are gathered once to build the matrix); "
    "workers hold one shuffle partition and one shard at a time plus the broadcast matrix and the neighbour "
    "lists (n_items x k, stacked on one worker, then copied to each)."
)


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

def cpu_seconds(exclude: float = 0.0) -> dict[str, float]:
    """CPU seconds (user + system) used so far by this process (client and scheduler, less ``exclude``: the
    sampler's own thread) and by its children (nannies and workers), summed: per stage, the split that
    bounds the speed-up from more workers."""
    def used(p: psutil.Process) -> float:
        t = p.cpu_times()
        return t.user + t.system

    me, workers = psutil.Process(), 0.0
    for child in me.children(recursive=True):
        try:
            workers += used(child)
        except psutil.NoSuchProcess:
            continue
    return {"client": used(me) - exclude, "workers": workers}


class StageSampler(logging.Handler):
    """Follows the pipeline's ``[stage] started`` log lines and samples process RSS per stage.

    Roles: ``client`` (this process, which also hosts the LocalCluster scheduler and nannies) and
    ``worker`` (the largest worker process, a child of this one). Sampling from outside the workers
    keeps it free of the Dask event loop, so a busy worker is still measured. The process list is walked
    again only every ``REFRESH`` samples, and the sampling thread's own CPU is left out of the client's, so
    walking ``/proc`` is not counted as the job's work.
    """

    REFRESH = 20

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.stage = "setup"
        self.peaks: dict[str, dict[str, int]] = {}
        self.cpu: dict[str, dict[str, float]] = {}  # CPU seconds per stage: client, workers (summed)
        self.process_peaks: dict[int, int] = {}  # peak RSS of each child process (nannies and workers) over the run
        self._own_cpu = 0.0  # CPU seconds of the sampling thread so far
        self._procs: list[psutil.Process] = []
        self._samples = 0
        self._cpu_at = cpu_seconds()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg.startswith("[") and (msg.endswith("] started") or "] done in " in msg):
            now, name = cpu_seconds(self._own_cpu), msg[1:msg.index("]")]
            if msg.endswith("] started"):
                self.stage = name
            else:
                spent = self.cpu.setdefault(name, {"client": 0.0, "workers": 0.0})
                for role in spent:
                    spent[role] = round(spent[role] + now[role] - self._cpu_at[role], 2)
            self._cpu_at = now

    def sample(self) -> None:
        """One sample of every process in this job's tree, folded into the current stage's peaks."""
        me = psutil.Process()
        if self._samples % self.REFRESH == 0:
            self._procs = me.children(recursive=True)
        self._samples += 1
        rss = {"client": me.memory_info().rss, "worker": 0}
        for child in self._procs:
            try:
                size = child.memory_info().rss
            except psutil.NoSuchProcess:
                continue
            rss["worker"] = max(rss["worker"], size)
            self.process_peaks[child.pid] = max(self.process_peaks.get(child.pid, 0), size)
        peak = self.peaks.setdefault(self.stage, {})
        for role, value in rss.items():
            peak[role] = max(peak.get(role, 0), value)

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.sample()
            self._own_cpu = time.thread_time()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_once(lake: Path, out: Path, workers: int, days: int, memory_limit: str = "auto") -> dict[str, Any]:
    """The daily job on ``lake`` with ``workers`` single-threaded worker processes (each held to
    ``memory_limit``); figures as a dict, with every child process's peak RSS in ``process_peaks``."""
    from encore.config import load_settings
    from encore.job.pipeline import run

    settings = load_settings(overrides={
        "lake": {"path": str(lake)}, "output": {"path": str(out)},
        "ingest": {"window_days": days}, "cluster": {"n_workers": workers, "threads_per_worker": 1,
                                                     "processes": True, "memory_limit": memory_limit},
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
        "peaks": sampler.peaks, "cpu": sampler.cpu, "process_peaks": sorted(sampler.process_peaks.values()),
        "bytes_read": folder_bytes(lake / "bids"),
        "bytes_written": folder_bytes(out / "runs" / result.run_id),
        "pair_visits_per_s": counts["pair_visits"] / models_s if models_s else None,
        "load": os.getloadavg(),
    }


# --- the ladder -----------------------------------------------------------------------------------------

def measure(root: Path, rung: str, quick: bool, workers: int, repeat: int = 1, memory_limit: str = "auto"
            ) -> dict[str, Any]:
    """The run with the median total of ``repeat`` runs of (rung, workers), every total kept in ``totals``."""
    runs = sorted((measure_once(root, rung, quick, workers, memory_limit) for _ in range(repeat)),
                  key=lambda r: r["total_s"])
    return {**runs[len(runs) // 2], "totals": [r["total_s"] for r in runs]}


def measure_once(root: Path, rung: str, quick: bool, workers: int, memory_limit: str = "auto") -> dict[str, Any]:
    """Run one (rung, workers) in a fresh subprocess so its peak memory is its own; each worker is held to
    ``memory_limit``."""
    lake = ensure_rung(root, rung, quick)
    out = lake.parent / f"out-w{workers}"
    shutil.rmtree(out, ignore_errors=True)  # a fresh output: no earlier run to compare with, so no diff stage
    days = QUICK_DAYS if quick else DAYS
    load_before = os.getloadavg()
    cmd = [sys.executable, __file__, "--child", json.dumps([str(lake), str(out), workers, days, memory_limit])]
    done = subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.PIPE, text=True)  # log to stderr
    row = json.loads(done.stdout.strip().splitlines()[-1])
    key = f"{rung}-quick" if quick else rung
    return {**row, "rung": key, "load_before": load_before, "memory_limit": memory_limit}


def worker_peaks(row: dict[str, Any]) -> list[int]:
    """Each worker process's peak RSS over the run, largest first (the sampler also sees Python's small
    resource-tracker process, left out)."""
    return sorted((p for p in row["process_peaks"] if p > 100e6), reverse=True)


def scale_out(rows: list[dict[str, Any]]) -> str:
    """Memory as workers are added: per run held to a ``memory_limit``, each worker's peak, their sum and the
    client's, and the largest worker's peak in the stages that hold the matrix and models."""
    stages = ("ingest", "matrix", "models", "recommend")
    head = ["rung", "workers", "memory_limit", "total s", "each worker's peak GB", "workers' sum GB",
            "client GB", *[f"largest worker in {s} GB" for s in stages]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted((r for r in rows if r.get("memory_limit", "auto") != "auto"),
                    key=lambda r: (bids_of(r), r["workers"])):
        peaks = worker_peaks(r)
        client = max(p.get("client", 0) for p in r["peaks"].values())
        cells = [r["rung"], str(r["workers"]), r["memory_limit"], f"{r['total_s']:.1f}",
                 ", ".join(gb(p) for p in peaks), gb(sum(peaks)), gb(client),
                 *[gb(r["peaks"][s]["worker"]) if s in r["peaks"] else "–" for s in stages]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bids_of(row: dict[str, Any]) -> int:
    """Bid rows read by the run (accepted + rejected)."""
    return int(row["counts"]["sources"]["bids"]["rows_in"])


def current(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the code as it is; labels such as "1M (before)" keep earlier versions for comparison."""
    return [r for r in rows if " " not in r["rung"]]


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
                 f"{r['load'][0]:.1f}", total_cell(r), *[f"{t.get(s, 0):.1f}" for s in STAGES],
                 gb(client), gb(worker) if worker else "–", f"{r['bytes_read'] / 1e6:.0f}", f"{r['bytes_written'] / 1e6:.0f}",
                 f"{r['counts']['pair_visits']:.3g}", f"{pvs:.3g}" if pvs else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def total_cell(row: dict[str, Any]) -> str:
    """The total, and the range of the repeated runs when there were several (the row is the median run)."""
    totals = row.get("totals", [row["total_s"]])
    return f"{row['total_s']:.1f}" + (f" ({totals[0]:.1f}–{totals[-1]:.1f}, {len(totals)} runs)" if len(totals) > 1 else "")


def stage_memory(rows: list[dict[str, Any]]) -> str:
    """Peak RSS per stage (client+scheduler / largest worker), GB, for each run."""
    head = ["rung", "workers", *STAGES]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(rows, key=lambda r: (bids_of(r), r["workers"])):
        cells = [r["rung"], str(r["workers"])]
        for s in STAGES:
            p = r["peaks"].get(s)
            cells.append(f"{gb(p['client'])} / {gb(p['worker']) if p['worker'] else '–'}" if p else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def stage_cpu(rows: list[dict[str, Any]]) -> str:
    """CPU seconds per stage (client incl. scheduler / workers summed) for the runs that recorded them."""
    head = ["rung", "workers", *STAGES, "total"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted((r for r in rows if r.get("cpu")), key=lambda r: (bids_of(r), r["workers"])):
        cpu = r["cpu"]
        cells = [r["rung"], str(r["workers"])]
        cells += [f"{cpu[s]['client']:.1f} / {cpu[s]['workers']:.1f}" if s in cpu else "–" for s in STAGES]
        cells.append(" / ".join(f"{sum(c[role] for c in cpu.values()):.1f}" for role in ("client", "workers")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(rows: list[dict[str, Any]], path: Path) -> None:
    """Log-log wall time per stage and in total against bids, one line style per worker count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = current(rows)
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


def serial_parallel(rows: list[dict[str, Any]]) -> tuple[str, float, float]:
    """Serial seconds and parallel worker-core-seconds per bid, from the largest rung run on 2 workers with its
    CPU split recorded: the client's CPU seconds (with the scheduler) are the serial part, the workers' summed
    CPU seconds the parallel part. On a cluster the client has its own machine, so nothing else of it waits on
    the workers' cores. Returns (rung, serial, parallel); ("", 0, 0) when no such run exists.
    """
    measured = [r for r in current(rows) if r["workers"] == 2 and r.get("cpu")]
    if not measured:
        return "", 0.0, 0.0
    two = max(measured, key=bids_of)
    cpu = {role: sum(c[role] for c in two["cpu"].values()) for role in ("client", "workers")}
    return two["rung"], cpu["client"] / bids_of(two), cpu["workers"] / bids_of(two)


def growth(rows: list[dict[str, Any]]) -> str:
    """Client memory extrapolated to 1e9 bids, and how time and Σ deg² grew from 10M to 100M (same workers)."""
    by = {(r["rung"], r["workers"]): r for r in current(rows)}
    both = [w for w in (1, 2) if ("100M", w) in by and ("10M", w) in by]
    if not both:
        return ""
    big, small = by[("100M", both[0])], by[("10M", both[0])]
    client = max(p.get("client", 0) for p in big["peaks"].values())
    time_x = big["total_s"] / small["total_s"]
    visits_x = big["counts"]["pair_visits"] / small["counts"]["pair_visits"]
    bids_x = bids_of(big) / bids_of(small)
    return (f"Extrapolated linearly, 1e9 bids need a client of ~10x the 100M peak (~{10 * client / 1e9:.0f} GB), "
            f"which the r6i.8xlarge is assumed to hold. From 10M to 100M on {both[0]} worker(s) the time grew "
            f"{time_x:.1f}x for {bids_x:.1f}x the bids (Σ deg² grew {visits_x:.1f}x: the catalogue grows with the "
            "users), so read the projections as "
            + ("close to linear." if time_x <= 1.1 * bids_x else "lower bounds."))


def check_fit(rows: list[dict[str, Any]], rung: str, serial: float, parallel: float) -> str:
    """The rung's measured totals next to what S + P/W predicts for them, so the model shows how well it fits."""
    runs = sorted((r for r in current(rows) if r["rung"] == rung), key=lambda r: r["workers"])
    return " Predicted against measured on that rung: " + ", ".join(
        f"{r['workers']} worker(s) {(serial + parallel / r['workers']) * bids_of(r):.0f} s against {r['total_s']:.0f} s"
        for r in runs) + "."


def cost_model(rows: list[dict[str, Any]], bids: float = 1e9, workers: tuple[int, ...] = (8, 16, 32)) -> str:
    """Projected wall time and EC2 cost of ``bids`` on clusters of single-threaded workers."""
    rung, serial, parallel = serial_parallel(rows)
    if not rung:
        return "Not fitted: no rung has been measured on 2 workers with its CPU split yet."
    fitted = (f"Fitted on the {rung} rung (CPU split of the 2-worker run): serial {serial * 1e6:.2f} µs per bid, parallel "
              f"{parallel * 1e6:.2f} worker-core-µs per bid"
              + (f", i.e. {1 / parallel:,.0f} bids/s per worker-core." if parallel else ".")
              + check_fit(rows, rung, serial, parallel))
    lines = [fitted, "",
             "| workers | m6i.xlarge | wall time (h) | EC2 cost (USD) |", "|---|---|---|---|"]
    for w in workers:
        hours = (serial + parallel / w) * bids / 3600
        instances = -(-w // WORKERS_PER_INSTANCE)
        cost = hours * (instances * WORKER_PRICE + CLIENT_PRICE)
        lines.append(f"| {w} | {instances} | {hours:.2f} | {cost:.2f} |")
    return "\n".join(lines)


def missing(rows: list[dict[str, Any]]) -> str:
    """A line naming the rungs (and worker counts) not measured yet, so a gap never reads as a pass."""
    have = {(r["rung"], r["workers"]) for r in rows}
    gaps = [f"{rung} on {w}" for rung in RUNGS for w in (1, 2) if (rung, w) not in have]
    return ("Not measured yet: " + ", ".join(gaps) + " worker(s); `--rungs 10M,100M` runs them, `--quick` a "
            "tenth of the bids.") if gaps else ""


def targets(rows: list[dict[str, Any]]) -> str:
    """The job's three targets against what was measured (a target never measured says so)."""
    by = {(r["rung"], r["workers"]): r for r in current(rows)}

    def total(rung: str, w: int) -> str:
        r = by.get((rung, w))
        return f"{r['total_s']:.0f} s at load {r['load'][0]:.1f}" if r else "not measured"

    def speedup(rung: str) -> str:
        if (rung, 1) in by and (rung, 2) in by:
            return f"{by[(rung, 1)]['total_s'] / by[(rung, 2)]['total_s']:.2f}x"
        return "not measured"

    peak = max((max(max(p.values()) for p in r["peaks"].values()) for r in by.values() if r["rung"] == "100M"),
               default=None)
    big = 2 if ("100M", 2) in by else 1
    return "\n".join([
        "Targets:", f"- 5 M bids (100,000 daily users) under 60 s on 2 workers: {total('5M', 2)}.",
        f"- 100 M bids under 15 min, no process above 16 GB: {total('100M', big)} on {big} worker(s)"
        + (f", peak {gb(peak)} GB." if peak else "."),
        f"- >= 1.8x from 1 to 2 workers on 10 M: {speedup('10M')} (1 M: {speedup('1M')}, 5 M: {speedup('5M')})."])


def section(rows: list[dict[str, Any]]) -> str:
    """The "Scale ladder" section of docs/benchmarks.md."""
    loads = ", ".join(f"{r['rung']}/{r['workers']}w: {r['load'][0]:.1f}" for r in sorted(rows, key=bids_of))
    return "\n\n".join([
        "## Scale ladder", ("`python benchmarks/pipeline.py --rungs 1M,5M,10M,100M --workers 1,2 --write` — the whole "
        "daily job (`encore.job.pipeline.run`, fresh LocalCluster of single-threaded worker processes) on cached "
        "synthetic lakes, 30 days at 0.35 bids per buyer-day. 2-core, 24 GB box with nothing else running "
        f"(1-minute load average at the end of each run: {loads}; the job itself brings it to ~2-3)."), table(rows), missing(rows), targets(rows), FIXES,
        "Peak RSS per stage, GB (client incl. scheduler / largest worker):", stage_memory(rows),
        ("CPU seconds per stage (client incl. scheduler / all workers summed), from psutil at each stage's start "
         "and end: the client's share does not shrink with workers, and the workers' sum shows what a second "
         "worker process costs on the same two cores:"), stage_cpu(rows),
        f"![cost vs bids]({FIGURE.name})", "### Cost model for 1 billion bids", cost_model(rows),
        COST_ASSUMPTIONS + " " + growth(rows)])


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
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell; the median run is kept")
    parser.add_argument("--memory-limit", default="auto",
                        help="each worker's memory_limit (e.g. 5GB); runs held to one print the scale-out table")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        lake, out, workers, days, *limit = json.loads(args.child)
        print(json.dumps(run_once(Path(lake), Path(out), workers, days, *limit)))
        return
    store = args.lake_root / "ladder.json"
    for rung in filter(None, args.rungs.split(",")):
        for workers in map(int, args.workers.split(",")):
            row = measure(args.lake_root, rung, args.quick, workers, args.repeat, args.memory_limit)
            results = load_results(store)  # re-read: another ladder may have added rows meanwhile
            limit = "" if args.memory_limit == "auto" else f"/{args.memory_limit}"
            results[f"{row['rung']}/{workers}{limit}"] = row
            store.write_text(json.dumps(results, indent=1))
            print(f"{row['rung']} on {workers} worker(s): {row['total_s']:.1f}s, load {row['load'][0]:.1f}",
                  file=sys.stderr, flush=True)
    rows = list(load_results(store).values())
    if args.memory_limit != "auto":
        print(scale_out(rows))
        return
    rows = [r for r in rows if r.get("memory_limit", "auto") == "auto"]
    print(table(rows))
    print()
    print(stage_memory(rows))
    if args.write:
        figure(rows, FIGURE)
        write_section(section(rows), DOCS / "benchmarks.md")


if __name__ == "__main__":
    main()
