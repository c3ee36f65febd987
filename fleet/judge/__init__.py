"""The judge: pure functions from results and baselines to verdicts, and from verdicts to a run's status."""

from fleet.judge.rfc_rule import judge_metric, judge_metrics, within_tolerance
from fleet.judge.verdicts import (
    baseline_record_command,
    bisect_command,
    judge_cell,
    overall_status,
    summarize,
)

__all__ = [
    "baseline_record_command",
    "bisect_command",
    "judge_cell",
    "judge_metric",
    "judge_metrics",
    "overall_status",
    "summarize",
    "within_tolerance",
]
