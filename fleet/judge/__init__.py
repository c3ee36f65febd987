"""The judge: pure functions from results and baselines to verdicts, and from verdicts to a run's status."""

from fleet.judge.decide import ALPHA, RULES, SAME_ALPHA, Rule, decide, gather
from fleet.judge.multiple import METHODS, Method, benjamini_hochberg, holm
from fleet.judge.rfc_rule import judge_metric, judge_metrics, within_tolerance
from fleet.judge.verdicts import (
    CellCase,
    baseline_record_command,
    bisect_command,
    judge_cell,
    judge_cells,
    overall_status,
    summarize,
)

__all__ = [
    "ALPHA",
    "METHODS",
    "RULES",
    "SAME_ALPHA",
    "CellCase",
    "Method",
    "Rule",
    "baseline_record_command",
    "benjamini_hochberg",
    "bisect_command",
    "decide",
    "gather",
    "holm",
    "judge_cell",
    "judge_cells",
    "judge_metric",
    "judge_metrics",
    "overall_status",
    "summarize",
    "within_tolerance",
]
