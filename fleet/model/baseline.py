"""Baseline: the expected value of each metric for one (hardware, variant, model), as a reviewed file.

The document is a superset of the RFC's baseline JSON (vLLM #28135): a file written by hand in any of
the RFC's spellings validates as it is: `gpu_type` for `hardware`, `metrics` for `baselines`, and
`last_updated` left out. fleet writes `hardware`, `baselines` and `last_updated`. fleet's extensions
record how the numbers were obtained: how many runs, their spread and raw values, and the environment
they ran in.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import AliasChoices, Field, field_validator, model_validator

from fleet.model._base import Strict


class MetricBaseline(Strict):
    expected: float
    tolerance_pct: float = Field(gt=0, le=1000)
    # fleet's extensions: the recorded distribution behind `expected`.
    n: int | None = Field(default=None, ge=1)
    std: float | None = Field(default=None, ge=0)
    mad: float | None = Field(default=None, ge=0)
    quantiles: dict[str, float] | None = None
    values: list[float] | None = None
    unit: str | None = None
    reason: str | None = None
    #: Events one run's value is a mean over (drafts, draft tokens or prompts) for count-based metrics;
    #: the judge's count-aware tests use it when a result carries no counters of its own.
    trials: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _recorded_runs_agree(self) -> MetricBaseline:
        if self.values is not None:
            if len(self.values) == 0:
                raise ValueError("values, when given, must hold at least one recorded run")
            if self.n is not None and self.n != len(self.values):
                raise ValueError(f"n is {self.n} but {len(self.values)} values are recorded")
            if not all(math.isfinite(v) for v in self.values):
                raise ValueError("values must be finite numbers")
        if not math.isfinite(self.expected):
            raise ValueError("expected must be a finite number")
        return self

    @property
    def lo(self) -> float:
        return self.expected - abs(self.expected) * self.tolerance_pct / 100.0

    @property
    def hi(self) -> float:
        return self.expected + abs(self.expected) * self.tolerance_pct / 100.0


class BaselineProvenance(Strict):
    engine: str | None = None
    engine_version: str | None = None
    vllm_version: str | None = None
    vllm_commit: str | None = None
    image_digest: str | None = None
    driver: str | None = None
    gpu_name: str | None = None
    torch: str | None = None
    fleet_version: str | None = None
    recorded_at: str | None = None
    hostname: str | None = None
    command: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class Baseline(Strict):
    schema_version: int | None = Field(default=None, ge=1, le=1)
    variant: str
    model: str
    draft_model: str | None = None
    hardware: str = Field(validation_alias=AliasChoices("hardware", "gpu_type"))
    dataset: str | None = None
    baselines: dict[str, MetricBaseline] = Field(min_length=1,
                                                 validation_alias=AliasChoices("baselines", "metrics"))
    #: None only in a hand-written file that does not say (the RFC's examples do not all carry it).
    last_updated: str | None = None
    baseline_commit: str | None = None
    notes: str = ""
    # fleet's extensions
    runs: int | None = Field(default=None, ge=1)
    #: Engine starts each recorded run's latency is the median of (Workload.engine_starts); absent: one.
    #: A run measured over another number spreads differently, so its latency is not judged against these.
    engine_starts: int | None = Field(default=None, ge=1)
    provenance: BaselineProvenance | None = None

    @field_validator("hardware")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()
