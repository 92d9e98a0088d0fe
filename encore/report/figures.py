"""The report's figures as PNG bytes, drawn from the aggregate tables only (never from user rows).

Uses matplotlib's object API (``Figure`` + Agg canvas): no pyplot state, no display, safe in threads.
Each figure is laid out by one ``tight_layout`` pass and then drawn once: a layout engine
(``layout="constrained"``) measures every axes twice and makes ``savefig`` draw the figure twice, about a
quarter more CPU for the same page (docs/benchmarks.md, "Peers and small runs").
Category labels are drawn verbatim (``parse_math=False``): a catalogue name holding "$" is text, not
mathtext that could fail to parse.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from functools import partial

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

BLUE, ORANGE, GREEN, GREY = "#3b6ea8", "#e08a2c", "#4f9a5a", "#b9b9b9"
Tables = dict[str, pd.DataFrame]


def new_figure(width: float = 7.5, height: float = 3.6, ncols: int = 1) -> tuple[Figure, list]:
    """A figure with ``ncols`` axes side by side, light grid, no top/right spines (laid out by :func:`png`)."""
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)  # an Agg canvas from the start: layout and drawing share one renderer and its text metrics
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    return fig, axes


def png(fig: Figure) -> bytes:
    """Render a figure to PNG bytes: margins fitted to its labels, titles and colour bar, then one draw."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.canvas.print_png(buf)  # not savefig: the layout placeholder tight_layout leaves would make it draw twice
    return buf.getvalue()


def activity(t: Tables) -> Figure:
    """Bids and active bidders per day; new versus returning bidders per day."""
    d = t["daily_activity"]
    fig, (left, right) = new_figure(ncols=2)
    left.plot(d["date"], d["bids"], marker="o", color=BLUE, label="bids")
    left.plot(d["date"], d["bidders"], marker="o", color=ORANGE, label="active bidders")
    left.set_title("Bids and active bidders per day")
    left.legend(frameon=False)
    hidden = d["new_bidders"].isna()
    right.bar(d["date"], d["returning_bidders"].fillna(0), color=BLUE, label="returning")
    right.bar(d["date"], d["new_bidders"].fillna(0), bottom=d["returning_bidders"].fillna(0), color=ORANGE,
              label="new in window")
    right.bar(d["date"][hidden], d["bidders"][hidden].fillna(0), color=GREY, label="split suppressed")
    right.set_title("New versus returning bidders")
    right.legend(frameon=False, fontsize=8, loc="lower left")
    for ax in (left, right):
        ax.tick_params(axis="x", rotation=45, labelsize=8)
    return fig


def categories(t: Tables) -> Figure:
    """Share of bids, bidders and spend per category, side by side."""
    c = t["categories"].iloc[::-1]
    fig, (ax,) = new_figure(height=0.45 * len(c) + 1.2)
    y = np.arange(len(c))
    for i, (col, label, color) in enumerate((("bid_share", "bids", BLUE), ("bidder_share", "bidders", ORANGE),
                                             ("spend_share", "spend", GREEN))):
        ax.barh(y + (i - 1) * 0.27, c[col].fillna(0), height=0.27, color=color, label=label)
    ax.set_yticks(y, c["category"], parse_math=False)
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    ax.set_title("Share of bids, bidders and spend by category")
    ax.legend(frameon=False, loc="lower right")
    return fig


def prices(t: Tables) -> Figure:
    """Listing price per category: box p25–p75, line at the median, whiskers p10–p90 (log scale)."""
    p = t["prices"]
    stats = [{"whislo": r.p10, "q1": r.p25, "med": r.p50, "q3": r.p75, "whishi": r.p90} for r in p.itertuples()]
    fig, (ax,) = new_figure(height=0.45 * len(p) + 1.2)
    ax.bxp(stats, orientation="horizontal", showfliers=False, patch_artist=True, boxprops={"facecolor": "#cfdcec"})
    ax.set_yticks(range(1, len(p) + 1), p["category"], parse_math=False)
    ax.set_xscale("log")
    ax.set_title("Listing price by category (p10, p25, median, p75, p90)")
    return fig


def overbid(t: Tables) -> Figure:
    """Winning bid ÷ listing price per category: median with the interquartile range."""
    o = t["overbid"].dropna(subset=["median"])
    fig, (ax,) = new_figure(height=0.45 * len(o) + 1.2)
    y = np.arange(len(o))
    ax.errorbar(o["median"], y, xerr=[o["median"] - o["p25"], o["p75"] - o["median"]], fmt="o", color=BLUE,
                capsize=4)
    ax.axvline(1.0, color=GREY, linestyle="--")
    ax.set_yticks(y, o["category"], parse_math=False)
    ax.set_title("Final bid ÷ listing price on sold listings (median, p25–p75)")
    return fig


def lorenz(t: Tables) -> Figure:
    """Lorenz curves of bids across users and across listings against perfect equality."""
    curve = t["lorenz"]
    fig, (ax,) = new_figure(width=5, height=4)
    ax.plot([0, 1], [0, 1], color=GREY, linestyle="--", label="equal")
    for unit, color in (("users", BLUE), ("listings", ORANGE)):
        c = curve[curve["unit"] == unit]
        ax.plot(c["population_share"], c["value_share"], color=color, label=f"bids across {unit}")
    ax.set_xlabel("share of users / listings (fewest bids first)")
    ax.set_ylabel("share of bids")
    ax.legend(frameon=False)
    return fig


def bids_per_user(t: Tables) -> Figure:
    """Users per bid count on log-log axes (power-of-two bins, normalised by bin width)."""
    b = t["bids_per_user"].dropna(subset=["users_per_bid"])
    fig, (ax,) = new_figure(width=5, height=4)
    ax.loglog(np.sqrt(b["bids_from"] * b["bids_to"]), b["users_per_bid"], marker="o", color=BLUE)
    ax.set_xlabel("bids per user")
    ax.set_ylabel("users per unit of bids")
    ax.set_title("Bids per user")
    return fig


def entropy(t: Tables) -> Figure:
    """Histogram of users' category entropy (0 bits = loyalist)."""
    h = t["entropy"]
    fig, (ax,) = new_figure(width=5, height=4)
    ax.bar(h["entropy_from"], h["users"].fillna(0), width=h["entropy_to"] - h["entropy_from"], align="edge",
           color=BLUE, edgecolor="white")
    ax.set_xlabel("category entropy per user (bits)")
    ax.set_ylabel("users")
    ax.set_title("Loyalists (left) versus explorers (right)")
    return fig


def lift(t: Tables) -> Figure:
    """Heatmap of cross-category lift; suppressed cells grey and marked <5."""
    cells = t["lift"]
    grid = cells.pivot(index="category_a", columns="category_b", values="lift")
    names = sorted(set(grid.index) | set(grid.columns))
    grid = grid.reindex(index=names, columns=names)
    hidden = cells.pivot(index="category_a", columns="category_b", values="suppressed").reindex(
        index=names, columns=names).fillna(False).astype(bool)
    fig, (ax,) = new_figure(width=6.5, height=0.5 * len(names) + 2)
    ax.grid(False)
    vmax = max(2.0, float(np.nanmax(grid.to_numpy(), initial=1.0)))
    im = ax.imshow(grid.to_numpy(), cmap="RdBu_r", vmin=0, vmax=vmax)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            text = "<5" if hidden.loc[a, b] else ("" if np.isnan(grid.loc[a, b]) else f"{grid.loc[a, b]:.2f}")
            ax.text(j, i, text, ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", parse_math=False)
    ax.set_yticks(range(len(names)), names, parse_math=False)
    ax.set_xlabel("then bids on B")
    ax.set_ylabel("bidders of A")
    fig.colorbar(im, ax=ax, label="lift = P(B | A) / P(B)")
    return fig


def sources(t: Tables) -> Figure:
    """Share of recommendations placed by each source."""
    s = t["recommendation_sources"]
    fig, (ax,) = new_figure(width=5, height=3)
    ax.bar(s["source"], s["share"].fillna(0), color=[BLUE, ORANGE, GREEN, GREY][: len(s)])
    ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    ax.set_title("Recommendations by source")
    return fig


def stages(t: Tables) -> Figure:
    """Seconds per pipeline stage."""
    s = t["stage_times"].iloc[::-1]
    fig, (ax,) = new_figure(width=5, height=0.35 * len(s) + 1.2)
    ax.barh(s["stage"], s["seconds"], color=BLUE)
    ax.set_xlabel("seconds")
    ax.set_title("Time per stage")
    return fig


#: trend figure name → (history column, title, tick format)
TRENDS: dict[str, tuple[str, str, str]] = {
    "trend_recommendations": ("recommendations", "Recommendations per run", "{:,.0f}"),
    "trend_coverage": ("coverage", "Catalogue coverage per run", "{:.0%}"),
    "trend_rows_in": ("rows_in", "Input rows per run", "{:,.0f}"),
    "trend_rejected_ratio": ("rejected_ratio", "Rejected input rows per run", "{:.1%}"),
}


def run_labels(created_at: pd.Series, run_id: pd.Series) -> list[str]:
    """One short label per run: its day and hour (``MM-DD HH:MM``), or its id when the time is unknown."""
    return [str(c)[5:16].replace("T", " ") if isinstance(c, str) and len(c) >= 16 else str(r)[:15]
            for c, r in zip(created_at, run_id, strict=True)]


def trend(t: Tables, name: str) -> Figure:
    """One figure of the run history, oldest run left, this run last in orange; a missing value is a gap.

    Small, so four sit side by side; with no run the axes are empty, with one it is a single point.
    """
    column, title, tick = TRENDS[name]
    h = t["run_history"]
    values = pd.to_numeric(h[column], errors="coerce").astype(float).to_numpy()
    x = np.arange(len(h))
    fig, (ax,) = new_figure(width=3.8, height=2.6)
    ax.plot(x, values, marker="o", markersize=4, color=BLUE)
    if len(h):
        ax.plot(x[-1:], values[-1:], marker="o", markersize=6, color=ORANGE, linestyle="none")
    step = max(1, -(-len(h) // 6))  # at most about six labels, counted back from this run so it has one
    labels = run_labels(h["created_at"], h["run_id"])
    ax.set_xticks(x[::-step][::-1], labels[::-step][::-1], rotation=45, ha="right", fontsize=7, parse_math=False)
    ax.yaxis.set_major_formatter(lambda v, _: tick.format(v))
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(title, fontsize=9)
    return fig


#: figure name → (drawing function, the table it needs)
FIGURES: dict[str, tuple[Callable[[Tables], Figure], str]] = {
    "activity": (activity, "daily_activity"), "categories": (categories, "categories"),
    "prices": (prices, "prices"), "overbid": (overbid, "overbid"), "lorenz": (lorenz, "lorenz"),
    "bids_per_user": (bids_per_user, "bids_per_user"), "entropy": (entropy, "entropy"), "lift": (lift, "lift"),
    "sources": (sources, "recommendation_sources"), "stages": (stages, "stage_times"),
    **{name: (partial(trend, name=name), "run_history") for name in TRENDS},
}


def drawable(tables: Tables) -> list[str]:
    """Names of the figures whose table exists and has rows."""
    return [name for name, (_, need) in FIGURES.items() if need in tables and not tables[need].empty]


_DRAWING = threading.Lock()  # matplotlib's text layout (its mathtext parser) is not thread-safe


def render(name: str, tables: Tables) -> bytes:
    """PNG bytes of one figure (a unit of work that can run on a cluster worker). Figures drawn by
    threads of one process (an in-process cluster) are drawn one at a time: concurrent ones break
    matplotlib's shared tick-label parser."""
    with _DRAWING:
        return png(FIGURES[name][0](tables))
