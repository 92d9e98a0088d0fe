"""The consumer-behaviour report: pure tables, figures, one self-contained HTML page, and the builder."""

from encore.report.build import (
    UCI_ATTRIBUTION,
    ReportInput,
    attribution_for,
    build_report,
    interaction_figures,
)

__all__ = ["UCI_ATTRIBUTION", "ReportInput", "attribution_for", "build_report", "interaction_figures"]
