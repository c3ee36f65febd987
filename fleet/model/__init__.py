"""Value types shared by every part of fleet: the catalog, cells, result documents, baselines, verdicts.

They are pydantic models because they cross edges (YAML files, JSON documents, the CLI, a Job's
container); each forbids unknown fields so that a typo is an error, not a silent default.
"""

from fleet.model.baseline import Baseline, BaselineProvenance, MetricBaseline
from fleet.model.catalog import (
    METHODS_NEEDING_DRAFT,
    Cell,
    EngineName,
    Hardware,
    Method,
    Tier,
    TierEntry,
    Toleration,
    Variant,
    Vendor,
    Workload,
    model_slug,
)
from fleet.model.execution import AXES, execution_id
from fleet.model.result import (
    SCHEMA_VERSION,
    EngineStart,
    MatchSummary,
    Measurement,
    PrefixCacheCounters,
    Provenance,
    RequestTiming,
    ResultError,
    RunResult,
    SpecCounters,
)
from fleet.model.verdict import (
    CellVerdict,
    DifferentialMetric,
    DifferentialStatus,
    DifferentialVerdict,
    MetricVerdict,
    RunReport,
    Status,
)

__all__ = [
    "AXES",
    "METHODS_NEEDING_DRAFT",
    "SCHEMA_VERSION",
    "Baseline",
    "BaselineProvenance",
    "Cell",
    "CellVerdict",
    "DifferentialMetric",
    "DifferentialStatus",
    "DifferentialVerdict",
    "EngineName",
    "EngineStart",
    "Hardware",
    "MatchSummary",
    "Measurement",
    "Method",
    "MetricBaseline",
    "MetricVerdict",
    "PrefixCacheCounters",
    "Provenance",
    "RequestTiming",
    "ResultError",
    "RunReport",
    "RunResult",
    "SpecCounters",
    "Status",
    "Tier",
    "TierEntry",
    "Toleration",
    "Variant",
    "Vendor",
    "Workload",
    "execution_id",
    "model_slug",
]
