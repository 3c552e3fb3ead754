"""The run report: one self-contained ``report.html`` with the search's story in plots."""

from .html import build_report, write_report
from .plots import pareto_front

__all__ = [
    "build_report",
    "pareto_front",
    "write_report",
]
