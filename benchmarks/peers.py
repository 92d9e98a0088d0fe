"""encore against its peers on the same lake, in one sitting: the 30-line script and PySpark.

- **script**: what a data scientist would write: pyarrow reads the bids, pandas counts the (user, listing)
  pairs, implicit's ``BM25Recommender(K=50)`` fits and recommends 20 per user, one Parquet file out. No
  validation, no auction rules, no backoff, no report. implicit gets as many threads as encore has worker
  threads (``--threads``).
- **spark**: PySpark in ``local[N]`` mode: ALS (rank 64, 10 iterations, implicit preferences), recommend 20
  for all users, and the item-item cosine self-join (top 50 neighbours per item). Needs ``pip install
  pyspark`` and a Java runtime (Debian's ``openjdk-17-jre-headless``); a benchmark only, never a dependency.
- **encore**: ``encore run`` on the lake with its defaults (the whole daily job), ``ENCORE_*`` variables
  cleared but those ``--encore-env`` sets.

Each run is a fresh subprocess timed from outside (wall seconds, CPU seconds of its process tree, and the peak
RSS of its largest process, from GNU time); ``--repeat`` interleaves the peers (encore, script, encore, script,
...), the median is kept.

    python benchmarks/peers.py --lake data/bench/1M/lake --peers encore,script,spark --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TIME = "/usr/bin/time"  # GNU time: the peak RSS of the largest process in the run's tree
WHAT = {
    "encore": "the daily job with its configured model (model.kind): validation, rejects, rules and backoff, "
              "20 per user, similar items, popular tables, report",
    "script": "pyarrow + pandas pair counts + implicit BM25Recommender(K=50), 20 per user, one Parquet",
    "spark": "PySpark local: ALS rank 64 x 10 iterations + recommendForAllUsers(20) + item-item cosine "
             "self-join (top 50)",
}


def script_peer(lake: Path, out: Path, threads: int) -> int:
    """The 30-line script: every bid file of the lake into 20 BM25 item-kNN recommendations per user."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from implicit.nearest_neighbours import BM25Recommender
    from scipy.sparse import csr_matrix

    bids = pq.read_table(lake / "bids", columns=["uid", "listing_id"]).to_pandas()
    pairs = bids.groupby(["uid", "listing_id"], observed=True).size().reset_index(name="n")
    users, user = np.unique(pairs["uid"].to_numpy(), return_inverse=True)
    items, item = np.unique(pairs["listing_id"].to_numpy(), return_inverse=True)
    X = csr_matrix((pairs["n"].to_numpy(np.float32), (user, item)), shape=(len(users), len(items)))
    model = BM25Recommender(K=50, num_threads=threads)
    model.fit(X, show_progress=False)
    rows = np.arange(len(users))
    ids, scores = model.recommend(rows, X[rows], N=20, filter_already_liked_items=True)
    keep = ids >= 0
    table = pa.table({"uid": np.repeat(users, keep.sum(axis=1)), "item_id": items[ids[keep]],
                      "rank": (np.nonzero(keep)[1] + 1).astype(np.int16), "score": scores[keep]})
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out / "recommendations.parquet")
    return table.num_rows


def spark_peer(lake: Path, out: Path, threads: int) -> int:
    """ALS and the cosine self-join in PySpark ``local[threads]``; returns the recommendation rows written."""
    from pyspark.ml.feature import StringIndexer
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import SparkSession, Window
    from pyspark.sql import functions as F

    spark = (SparkSession.builder.master(f"local[{threads}]").appName("encore-peer")
             .config("spark.driver.memory", "8g").config("spark.sql.shuffle.partitions", str(4 * threads))
             .config("spark.ui.enabled", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    try:
        bids = spark.read.parquet(str(lake / "bids")).select("uid", "listing_id")
        pairs = bids.groupBy("uid", "listing_id").agg(F.count("*").cast("float").alias("n"))
        pairs = StringIndexer(inputCol="uid", outputCol="u").fit(pairs).transform(pairs)
        pairs = pairs.select(F.col("u").cast("int").alias("u"), F.col("listing_id").cast("int").alias("i"), "n").cache()
        als = ALS(rank=64, maxIter=10, implicitPrefs=True, userCol="u", itemCol="i", ratingCol="n", seed=42,
                  coldStartStrategy="drop")
        recs = als.fit(pairs).recommendForAllUsers(20)
        recs.write.mode("overwrite").parquet(str(out / "als"))
        norms = pairs.groupBy("i").agg(F.sqrt(F.sum(F.col("n") * F.col("n"))).alias("norm"))
        a, b = pairs.alias("a"), pairs.alias("b")
        dots = (a.join(b, F.col("a.u") == F.col("b.u")).where(F.col("a.i") != F.col("b.i"))
                .groupBy(F.col("a.i").alias("i"), F.col("b.i").alias("j"))
                .agg(F.sum(F.col("a.n") * F.col("b.n")).alias("dot")))
        cos = (dots.join(norms, "i").join(norms.withColumnRenamed("i", "j").withColumnRenamed("norm", "norm_j"), "j")
               .withColumn("cos", F.col("dot") / (F.col("norm") * F.col("norm_j"))))
        top = cos.withColumn("r", F.row_number().over(Window.partitionBy("i").orderBy(F.desc("cos"), "j")))
        top.where(F.col("r") <= 50).select("i", "j", "cos").write.mode("overwrite").parquet(str(out / "similar"))
        return int(spark.read.parquet(str(out / "als")).count()) * 20
    finally:
        spark.stop()


def encore_peer(lake: Path, out: Path, env: dict[str, str]) -> int:
    """``encore run`` on the lake into ``out``; returns the recommendation rows it published."""
    environ = {**{k: v for k, v in os.environ.items() if not k.startswith("ENCORE_")}, **env}
    cmd = [str(Path(sys.executable).with_name("encore")), "run", "--lake", str(lake), "--output", str(out),
           "--no-guard"]
    subprocess.run(cmd, check=True, cwd=REPO, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = json.loads((out / "runs" / (out / "LATEST").read_text().strip() / "manifest.json").read_text())
    return int(manifest["counts"]["recommendations"])


def child(peer: str, lake: Path, out: Path, threads: int, env: dict[str, str]) -> None:
    """One peer's run in this process: prints its seconds and output rows as JSON."""
    start = time.perf_counter()
    if peer == "script":
        rows = script_peer(lake, out, threads)
    elif peer == "spark":
        rows = spark_peer(lake, out, threads)
    else:
        rows = encore_peer(lake, out, env)
    print(json.dumps({"seconds": round(time.perf_counter() - start, 2), "rows": rows}))


def measure(peer: str, lake: Path, threads: int, env: dict[str, str], work: Path) -> dict[str, Any]:
    """One run of ``peer`` in a fresh subprocess: wall seconds (start-up included), rows, peak RSS (GB); its
    output goes to a temporary folder under ``work``."""
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        rss = Path(tmp) / "maxrss"
        cmd = [TIME, "-o", str(rss), "-f", "%M %U %S", sys.executable, __file__, "--child",
               json.dumps([peer, str(lake), str(Path(tmp) / "out"), threads, env])]
        start = time.perf_counter()
        done = subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.PIPE, text=True)
        wall = time.perf_counter() - start
        # the largest process of the run's tree (wait4's ru_maxrss), then user and system CPU seconds of the tree
        peak_kb, user, system = rss.read_text().split()[-3:]
    row = json.loads(done.stdout.strip().splitlines()[-1])
    return {"peer": peer, "wall_s": round(wall, 2), "cpu_s": round(float(user) + float(system), 2), "rows": row["rows"],
            "peak_gb": int(peak_kb) / 1e6, "load": os.getloadavg()[0]}


def table(results: dict[str, list[dict[str, Any]]], bids: int | None) -> str:
    """Markdown: per peer, what it does, the median wall time (range), and the ratio to encore's median."""
    medians = {p: statistics.median(r["wall_s"] for r in runs) for p, runs in results.items()}
    lines = ["| peer | does | wall s (median, range, runs) | × encore | CPU s (median) | rows out | peak RSS GB |",
             "|---|---|---|---|---|---|---|"]
    for peer, runs in results.items():
        walls = sorted(r["wall_s"] for r in runs)
        ratio = f"{medians[peer] / medians['encore']:.2f}" if "encore" in medians else "–"
        cpu = [r["cpu_s"] for r in runs if "cpu_s" in r]
        lines.append(f"| {peer} | {WHAT[peer]} | {medians[peer]:.1f} ({walls[0]:.1f}–{walls[-1]:.1f}, {len(walls)}) | "
                     f"{ratio} | {statistics.median(cpu) if cpu else float('nan'):.1f} | {runs[0]['rows']:,} | "
                     f"{max(r['peak_gb'] for r in runs):.2f} |")
    return (f"{bids:,} bids in the lake.\n\n" if bids else "") + "\n".join(lines)


def lake_bids(lake: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in (lake / "bids").rglob("*.parquet"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lake", type=Path, default=REPO / "data" / "bench" / "1M" / "lake")
    parser.add_argument("--peers", default="encore,script", help="comma-separated: encore, script, spark")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="implicit's and Spark's threads: encore's worker threads (cores by default)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--encore-env", default="{}", help='JSON of ENCORE_* variables for the encore runs')
    parser.add_argument("--json", type=Path, help="append the runs to this JSON file")
    parser.add_argument("--work", type=Path, default=REPO / "data", help="folder for the runs' temporary outputs")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        peer, lake, out, threads, env = json.loads(args.child)
        child(peer, Path(lake), Path(out), threads, env)
        return
    args.work.mkdir(parents=True, exist_ok=True)
    peers = [p for p in args.peers.split(",") if p]
    unknown = sorted(set(peers) - set(WHAT))
    if unknown:
        parser.error(f"unknown peer {', '.join(unknown)}: choose from {', '.join(WHAT)}")
    env = json.loads(args.encore_env)
    results: dict[str, list[dict[str, Any]]] = {p: [] for p in peers}
    for _ in range(args.repeat):
        for peer in peers:
            run = measure(peer, args.lake.resolve(), args.threads, env, args.work)
            results[peer].append(run)
            print(f"{peer}: {run['wall_s']:.1f} s, load {run['load']:.1f}", file=sys.stderr, flush=True)
    if args.json:
        old = json.loads(args.json.read_text()) if args.json.exists() else []
        args.json.write_text(json.dumps(old + [{"lake": str(args.lake), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                                "threads": args.threads, "results": results}], indent=1))
    print(table(results, lake_bids(args.lake)))


if __name__ == "__main__":
    main()
