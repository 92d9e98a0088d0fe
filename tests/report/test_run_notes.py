"""Run notes and the synthetic-data banner in summary.json and the page."""

from __future__ import annotations

from html.parser import HTMLParser

from encore.report import html
from encore.report.build import assemble
from tests.report.test_tables import hand_made

NOTES = ["0 live listings at run time: nothing but the cold-start list can be served",
         "created_at mixed time zones; normalised to UTC", "a <b>tagged</b> note & more"]


class Outline(HTMLParser):
    """The page's text in order, and the text inside each element carrying a class."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self.by_class: dict[str, list[str]] = {}
        self._open: list[str | None] = []

    def handle_starttag(self, tag, attrs):
        if tag not in ("img", "meta", "br"):
            self._open.append(dict(attrs).get("class"))

    def handle_endtag(self, tag):
        if tag not in ("img", "meta", "br") and self._open:
            self._open.pop()

    def handle_data(self, data):
        self.texts.append(data)
        for cls in filter(None, self._open):
            self.by_class.setdefault(cls, []).append(data)


def outline(page: str) -> Outline:
    parsed = Outline()
    parsed.feed(page)
    return parsed


def test_synthetic_banner_and_run_notes_sit_at_the_top_of_the_page_and_in_the_summary():
    inp = hand_made()
    inp.synthetic, inp.notes = True, list(NOTES)
    summary, frames = assemble(inp)
    assert summary["synthetic"] is True and summary["notes"] == NOTES
    page = html.render(summary, frames, {})
    parsed = outline(page)
    assert "".join(parsed.by_class["synthetic"]) == html.SYNTHETIC_BANNER
    assert "generated marketplace, not real bids" in html.SYNTHETIC_BANNER
    box = parsed.by_class["runnotes"]
    assert box[0] == "Run notes" and box[1:] == NOTES  # each note whole, as text: the markup in one is escaped
    assert "<b>tagged</b>" not in page and "a &lt;b&gt;tagged&lt;/b&gt; note &amp; more" in page
    order = "".join(parsed.texts)
    assert order.index(html.SYNTHETIC_BANNER) < order.index("Run notes") < order.index(NOTES[0]) \
        < order.index("Activity over time")  # near the top: before the first section


def test_a_real_run_without_notes_shows_neither_box():
    summary, frames = assemble(hand_made())
    assert summary["synthetic"] is False and summary["notes"] == []
    parsed = outline(html.render(summary, frames, {}))
    assert "synthetic" not in parsed.by_class and "runnotes" not in parsed.by_class
    assert summary["privacy"] in "".join(parsed.texts)  # the suppression rule is stated on every page


def test_legacy_input_adds_its_own_note_after_the_runs():
    inp = hand_made()
    inp.daily, inp.window, inp.notes = None, None, NOTES[:1]
    summary, frames = assemble(inp)
    assert summary["notes"][0] == NOTES[0] and "no dates" in summary["notes"][1]
    assert outline(html.render(summary, frames, {})).by_class["runnotes"][1:] == summary["notes"]
