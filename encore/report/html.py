"""One self-contained ``report.html``: inline CSS, figures as base64 data URIs, no scripts or external assets.

It opens from a file, an S3 console download or an e-mail attachment, with no network.
"""

from __future__ import annotations

import base64
import html
import math
from typing import Any

import pandas as pd

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2733;background:#f6f7f9}
main{max-width:980px;margin:0 auto;padding:24px 28px 48px;background:#fff}
h1{font-size:1.6em;margin:0 0 4px}h2{margin-top:36px;border-bottom:2px solid #e3e7ee;padding-bottom:4px}
h3{margin-bottom:4px}.meta{color:#5b6675;font-size:.9em}.reading{font-size:1.05em;margin:6px 0 12px}
.kpis{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}.kpi{background:#f0f4fa;border-radius:8px;
padding:10px 14px;min-width:130px}.kpi b{display:block;font-size:1.35em}.kpi span{color:#5b6675;font-size:.85em}
img{max-width:100%;height:auto;display:block;margin:8px 0}table{border-collapse:collapse;font-size:.88em;
margin:8px 0}th,td{padding:3px 10px;text-align:right;border-bottom:1px solid #e3e7ee}th:first-child,
td:first-child{text-align:left}td.s{color:#a0522d}.note{background:#fff8e6;border-left:4px solid #e0a82c;
padding:8px 12px}.attribution{background:#eef6ee;border-left:4px solid #4f9a5a;padding:8px 12px}
.synthetic{background:#b3261e;color:#fff;font-weight:600;font-size:1.1em;border-radius:6px;padding:10px 14px;
margin:12px 0}.runnotes{background:#fff8e6;border:1px solid #e0a82c;border-radius:6px;padding:4px 14px;margin:12px 0}
.runnotes h2{font-size:1.05em;margin:8px 0 4px;border:0;padding:0}.runnotes ul{margin:4px 0 8px;padding-left:20px}
.trends{display:flex;flex-wrap:wrap;gap:8px}.trends img{width:calc(50% - 4px);margin:0}
td.passed{color:#2e7d32}td.failed{color:#b3261e;font-weight:600}
footer{margin-top:36px;color:#5b6675;font-size:.85em}
"""
FIRST_RUN = "This is the first run: there is no published run to compare it with."
GUARD_OFF = "The publish guard is off (guard.enabled): this run was not checked before publishing."

HIDDEN = "–"  # a suppressed cell: fewer than MIN_USERS users, or its complement (see tables.suppress)
SYNTHETIC_BANNER = "Synthetic data: this run read a generated marketplace, not real bids."


def fmt(value: Any, kind: str) -> str:
    """Format one cell: int, pct, x (ratio), num, money or text; nulls become the suppression marker."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return HIDDEN
    if kind == "int":
        return f"{value:,.0f}"
    if kind == "pct":
        return f"{value:.1%}"
    if kind == "x":
        return f"{value:.2f}×"
    if kind == "num":
        return f"{value:,.2f}"
    if kind == "money":
        return f"{value:,.0f}"
    return html.escape(str(value))


def table(frame: pd.DataFrame, columns: dict[str, tuple[str, str]], limit: int = 40) -> str:
    """An HTML table of ``columns`` (name → (header, format)); suppressed cells read HIDDEN."""
    head = "".join(f"<th>{html.escape(label)}</th>" for label, _ in columns.values())
    rows = []
    for rec in frame.head(limit).to_dict("records"):
        cells = []
        for col, (_, kind) in columns.items():
            text = fmt(rec[col], kind)
            cells.append(f'<td class="s">{text}</td>' if text == HIDDEN else f"<td>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = f'<p class="meta">First {limit} of {len(frame)} rows; all rows are in the Parquet table.</p>' \
        if len(frame) > limit else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{more}"


def figure(pngs: dict[str, bytes], name: str, alt: str) -> str:
    """An <img> with the PNG inlined as a data URI (empty when the figure was not drawn)."""
    if name not in pngs:
        return ""
    data = base64.b64encode(pngs[name]).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def kpis(items: list[tuple[str, Any, str]]) -> str:
    """A row of headline figures: (label, value, format)."""
    tiles = "".join(f'<div class="kpi"><b>{fmt(v, kind)}</b><span>{html.escape(label)}</span></div>'
                    for label, v, kind in items)
    return f'<div class="kpis">{tiles}</div>'


def reading(s: dict[str, Any], key: str) -> str:
    return f'<p class="reading">{html.escape(s["readings"].get(key, ""))}</p>'


def section_activity(s: dict[str, Any], t: dict[str, pd.DataFrame], p: dict[str, bytes]) -> str:
    if s["activity"] is None:
        return ('<h2>Activity over time</h2><p class="note">This input has no bid dates (the legacy aggregate '
                'extract), so daily activity and new versus returning bidders are not available.</p>')
    cols = {"date": ("day", "text"), "bids": ("bids", "int"), "bidders": ("active bidders", "int"),
            "new_bidders": ("new", "int"), "returning_bidders": ("returning", "int")}
    days = t["daily_activity"].assign(date=lambda f: f["date"].dt.strftime("%Y-%m-%d"))
    return ("<h2>Activity over time</h2>" + reading(s, "activity")
            + figure(p, "activity", "bids, active bidders, new and returning bidders per day") + table(days, cols))


def section_categories(s: dict[str, Any], t: dict[str, pd.DataFrame], p: dict[str, bytes]) -> str:
    shares = {"bids": ("bids", "int"), "bidders": ("bidders", "int"), "bid_share": ("share of bids", "pct"),
              "bidder_share": ("share of bidders", "pct"), "spend_share": ("share of spend", "pct")}
    prices = {"category": ("category", "text"), "listings": ("listings", "int"), "p10": ("p10", "money"),
              "p25": ("p25", "money"), "p50": ("median", "money"), "p75": ("p75", "money"), "p90": ("p90", "money")}
    over = {"category": ("category", "text"), "sold_listings": ("sold listings", "int"),
            "p25": ("p25", "x"), "median": ("median", "x"), "p75": ("p75", "x")}
    return ("<h2>Categories and sub-categories</h2>" + reading(s, "categories")
            + figure(p, "categories", "share of bids, bidders and spend by category")
            + table(t["categories"], {"category": ("category", "text"), **shares})
            + "<h3>Sub-categories</h3>" + reading(s, "sub_categories")
            + table(t["sub_categories"], {"category": ("category", "text"),
                                          "sub_category": ("sub-category", "text"), **shares})
            + "<h3>Listing prices</h3>" + reading(s, "prices") + figure(p, "prices", "listing price by category")
            + table(t["prices"], prices)
            + "<h3>Overbid: final bid against listing price</h3>" + reading(s, "overbid")
            + figure(p, "overbid", "final bid over listing price per category") + table(t["overbid"], over))


def section_concentration(s: dict[str, Any], t: dict[str, pd.DataFrame], p: dict[str, bytes]) -> str:
    c = s["concentration"]
    return ("<h2>Concentration of demand</h2>" + reading(s, "concentration")
            + kpis([("bids from the top 1 % of users", c["top1_share"], "pct"),
                    ("bids from the top 10 % of users", c["top10_share"], "pct"),
                    ("Gini across users", c["gini_users"], "num"), ("Gini across listings", c["gini_listings"], "num")])
            + figure(p, "lorenz", "Lorenz curves of bids across users and listings"))


def section_engagement(s: dict[str, Any], t: dict[str, pd.DataFrame], p: dict[str, bytes]) -> str:
    e = s["engagement"]
    return ("<h2>Engagement depth</h2><h3>Bids per user</h3>" + reading(s, "bids_per_user")
            + figure(p, "bids_per_user", "bids per user, log-log")
            + "<h3>Loyalists and explorers</h3>" + reading(s, "entropy")
            + kpis([("loyalists (one category)", e["loyalist_share"], "pct"),
                    ("explorers (≥ 1 bit)", e["explorer_share"], "pct"),
                    ("mean category entropy (bits)", e["mean_entropy"], "num")])
            + figure(p, "entropy", "histogram of category entropy per user")
            + "<h3>Cross-category lift</h3>" + reading(s, "lift")
            + figure(p, "lift", "heatmap of cross-category lift"))


def section_recommendations(s: dict[str, Any], t: dict[str, pd.DataFrame], p: dict[str, bytes]) -> str:
    r = s["recommendations"]
    cols = {"source": ("source", "text"), "recommendations": ("recommendations", "int"),
            "users": ("users reached", "int"), "share": ("share", "pct")}
    return ("<h2>The recommendations</h2>" + reading(s, "recommendations")
            + kpis([("users served", r["users_served"], "int"), ("catalogue coverage (live)", r["coverage"], "pct"),
                    ("popularity bias", r["popularity_bias"], "x"),
                    ("users with backoff items", r["backoff_user_share"], "pct"),
                    ("users on the cold-start path", r["cold_start_user_share"], "pct")])
            + figure(p, "sources", "share of recommendations by source") + table(t["recommendation_sources"], cols)
            + rules_block(s.get("auction_rules")))


def rules_block(r: dict[str, Any] | None) -> str:
    """What the auction rules did: list rows each rule moved, listings each removed, the category spread."""
    if not r:
        return ""
    cells = [[html.escape(k.split(":", 1)[1]), html.escape(k.split(":", 1)[0]), number(v)]
             for k, v in r.items() if ":" in k]
    spread = r.get("spread_sum", 0) / r["spread_users"] if r.get("spread_users") else None
    return ("<h3>Auction rules</h3><p>Rows each rule moved in the lists, and listings each removed (from a list, "
            "or from the live catalogue for the serving time and the filters); outbid rows published: "
            f"{number(r.get('outbid_rows', 0))}; mean distinct categories per list: {number(spread)}.</p>"
            + rows(cells, ["rule", "effect", "listings"]))


def section_health(s: dict[str, Any], t: dict[str, pd.DataFrame], p: dict[str, bytes]) -> str:
    h = s["run_health"]
    rejects = t["rejects"]
    listed = table(rejects, {"source": ("source", "text"), "reason": ("reason", "text"), "rows": ("rows", "int")}) \
        if len(rejects) else "<p>No input row was rejected.</p>"
    return ("<h2>Run health</h2>" + reading(s, "run_health")
            + kpis([("rows in", h["rows_in"], "int"), ("accepted", h["rows_accepted"], "int"),
                    ("rejected", h["rows_rejected"], "int")])
            + listed + figure(p, "stages", "seconds per pipeline stage")
            + '<p class="meta">Stage times are those before the report stage itself.</p>')


def number(value: Any) -> str:
    """A figure of the run comparison: whole numbers with separators, others to 4 significant digits, a
    missing one empty (missing is not suppressed: these are run totals, not cells about users)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return html.escape(str(value))
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.4g}"


def rows(cells: list[list[str]], header: list[str], classes: list[list[str]] | None = None) -> str:
    """A table of already formatted (and escaped) cells; ``classes`` gives a cell class where not empty."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    classes = classes or [[""] * len(r) for r in cells]
    body = "".join("<tr>" + "".join(f'<td class="{c}">{v}</td>' if c else f"<td>{v}</td>" for v, c in zip(r, k, strict=True))
                   + "</tr>" for r, k in zip(cells, classes, strict=True))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def changes_block(c: dict[str, Any] | None) -> str:
    """Users gained and lost, list agreement, new listings, and every figure as today / yesterday / change."""
    if c is None:
        return f'<p class="note">{html.escape(FIRST_RUN)}</p>'
    lead = (f'<p class="meta">Run {html.escape(str(c.get("today")))} against the published run '
            f'{html.escape(str(c.get("yesterday")))}.</p>')
    tiles = kpis([("users gained", c.get("users_gained"), "int"), ("users lost", c.get("users_lost"), "int"),
                  ("users in both", c.get("users_in_both"), "int"), ("mean Jaccard", c.get("jaccard_mean"), "num"),
                  ("mean RBO", c.get("rbo_mean"), "num"), ("new listing share", c.get("new_listing_share"), "pct")])
    figs = c.get("figures") or {}
    cells = [[html.escape(name), number(f.get("today")), number(f.get("yesterday")), number(f.get("change"))]
             for name, f in figs.items()]
    return lead + tiles + rows(cells, ["figure", "today", "yesterday", "change"])


def guard_block(g: dict[str, Any] | None) -> str:
    """The publish guard's verdict and each check: passed or failed, its value and limit, what it means."""
    if g is None:
        return f'<h3>Publish guard</h3><p class="meta">{html.escape(GUARD_OFF)}</p>'
    verdict = "passed every check" if g.get("passed") else f"failed: {', '.join(map(str, g.get('failed', [])))}"
    checks = g.get("checks", [])
    cells = [[html.escape(str(k.get("name"))), "passed" if k.get("passed") else "failed", number(k.get("value")),
              number(k.get("limit")), html.escape(str(k.get("message", "")))] for k in checks]
    classes = [["", "passed" if k.get("passed") else "failed", "", "", ""] for k in checks]
    listed = rows(cells, ["check", "result", "value", "limit", "meaning"], classes) if checks \
        else "<p>No check applied to this run.</p>"
    return f"<h3>Publish guard</h3><p>The publish guard {html.escape(verdict)}.</p>" + listed


def section_changes(s: dict[str, Any], t: dict[str, pd.DataFrame], p: dict[str, bytes]) -> str:
    trends = "".join(figure(p, name, alt) for name, alt in (
        ("trend_recommendations", "recommendations per run"), ("trend_coverage", "catalogue coverage per run"),
        ("trend_rows_in", "input rows per run"), ("trend_rejected_ratio", "rejected input rows per run")))
    runs = len(s["history"])
    trend_part = (f'<h3>The last {runs} runs</h3><p class="meta">Oldest left; this run is the last point.</p>'
                  f'<div class="trends">{trends}</div>') if trends else ""
    return ("<h2>Since the published run</h2>" + changes_block(s["changes"]) + guard_block(s["guard"])
            + trend_part)


SECTIONS = (section_activity, section_categories, section_concentration, section_engagement,
            section_recommendations, section_changes, section_health)


def run_notes(s: dict[str, Any]) -> str:
    """The synthetic-data banner (a synthetic input only) and the box of the run's notes (when there are any)."""
    banner = f'<p class="synthetic" role="alert">{html.escape(SYNTHETIC_BANNER)}</p>' if s["synthetic"] else ""
    items = "".join(f"<li>{html.escape(note)}</li>" for note in s["notes"])
    box = f'<section class="runnotes"><h2>Run notes</h2><ul>{items}</ul></section>' if items else ""
    return banner + box


def header(s: dict[str, Any]) -> str:
    """Title, run and window, the synthetic banner and run notes, attribution, headline counts and the privacy
    note."""
    o = s["overview"]
    window = s["input"]["window"]
    span = f"bids from {window[0][:10]} to {window[1][:10]} (end exclusive)" if window else "legacy extract (no dates)"
    attribution = f'<p class="attribution">{html.escape(s["attribution"])}</p>' if s["attribution"] else ""
    return (f"<h1>Consumer behaviour report</h1><p class=\"meta\">Run {html.escape(str(s['run_id']))} · {span} · "
            f"encore {html.escape(s['encore_version'])} · generated {html.escape(s['generated_at'][:19])} UTC</p>"
            + run_notes(s) + attribution
            + kpis([("bidders", o["bidders"], "int"), ("bids", o["bids"], "int"), ("money bid", o["spend"], "money"),
                    ("listings with bids", o["listings_with_bids"], "int"),
                    ("listings in catalogue", o["catalogue_listings"], "int")])
            + f'<p class="note">Aggregates only: no user ids or names. {html.escape(s["privacy"])}</p>')


def render(summary: dict[str, Any], tables: dict[str, pd.DataFrame], pngs: dict[str, bytes]) -> str:
    """The whole page as one HTML string."""
    body = header(summary) + "".join(section(summary, tables, pngs) for section in SECTIONS)
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>encore report {html.escape(str(summary['run_id']))}</title><style>{CSS}</style></head>"
            f"<body><main>{body}<footer><p>{html.escape(summary['privacy'])}</p></footer></main></body></html>")
