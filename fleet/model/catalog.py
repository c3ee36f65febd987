"""The test catalog: hardware pools, spec-decode variants, workloads, tiers and the cells they expand to.

A Cell is self-contained: it is the whole input of one run of the suite, written to `cell.json` and
handed to a Kubernetes Job's container or to a local subprocess. It carries the variant, the models,
the hardware profile and the workload by value, so a result document never needs jobs/ to be read.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, computed_field, field_validator, model_validator

from fleet.model._base import Strict
from fleet.model.execution import AXES, ID_SEPARATOR, execution_id

Vendor = Literal["nvidia", "amd", "cpu"]
EngineName = Literal["reference", "vllm"]
Method = Literal["ngram", "ngram_gpu", "draft_model", "eagle", "eagle3", "mtp", "medusa", "suffix"]

#: Methods that speculate with a separate model (a small LM, an EAGLE head, Medusa heads).
METHODS_NEEDING_DRAFT: frozenset[str] = frozenset({"draft_model", "eagle", "eagle3", "medusa"})

_NAME = r"^[a-z0-9][a-z0-9_.-]*$"


class Toleration(Strict):
    key: str
    operator: Literal["Equal", "Exists"] = "Exists"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class Hardware(Strict):
    """A pool of identical machines: what a Job must request and where it may land."""

    name: str = Field(pattern=_NAME)
    vendor: Vendor
    description: str = ""
    gpu_product: str | None = None
    gpu_resource: str | None = None
    gpu_count: int = Field(default=1, ge=0)
    gpu_memory_gib: float | None = None
    node_labels: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    image: str | None = None
    cpu: str = "8"
    memory: str = "64Gi"
    shm_size: str = "16Gi"
    price_per_hour_usd: float | None = Field(default=None, ge=0)


class Variant(Strict):
    """One way of speculating: the method, its defaults and the vLLM sources it depends on."""

    name: str = Field(pattern=_NAME)
    method: Method
    num_speculative_tokens: int = Field(ge=1, le=64)
    draft_model: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    description: str = ""
    source_file_dependencies: list[str] = Field(default_factory=list)


class Workload(Strict):
    """What the suite feeds the engine: which prompts, how many, how many tokens, greedy."""

    prompts: str = "bundled:tiny-stdlib"
    num_prompts: int = Field(default=20, ge=1)
    max_tokens: int = Field(default=64, ge=2)
    warmup_prompts: int = Field(default=2, ge=0)
    batch_size: int = Field(default=1, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=0.0)
    dataset: str | None = None
    #: Independent engine starts one run's latency is measured over; its latency metrics are their median.
    #: The level of a whole engine start moves from start to start (on the H200's GPU-bound cell, with an
    #: occasional whole slow start, consecutive starts uncorrelated: docs/judging.md#engine-starts and
    #: #engine-start-noise), so the judge's run
    #: is steadier for more starts, as pyperf runs worker processes rather than one (Kalibera and Jones,
    #: "Rigorous benchmarking in reasonable time", 2013: repeat at the level whose variance dominates).
    engine_starts: int = Field(default=1, ge=1, le=9)


class TierEntry(Strict):
    """One row of a tier file: a variant on a model, on one or more hardware pools."""

    variant: str
    model: str
    draft_model: str | None = None
    hardware: list[str] = Field(min_length=1)
    engine_options: dict[str, Any] = Field(default_factory=dict)
    workload: Workload | None = None
    #: Execution axes (issue 30): each axis name maps to the values the matrix expands into one cell per
    #: combination, e.g. {"cudagraph": ["full", "none"], "prefix_caching": ["off", "on"]}. Under greedy
    #: decoding a drafter's acceptance must not depend on them; the differential judge compares cells
    #: that differ in one axis only.
    execution: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("execution", mode="before")
    @classmethod
    def _yaml_on_off(cls, value: Any) -> Any:
        # YAML 1.1 reads an unquoted `on` / `off` as true / false; `prefix_caching: [off, on]` means words.
        if isinstance(value, dict):
            return {name: [("on" if v else "off") if isinstance(v, bool) else v for v in values]
                    if isinstance(values, list) else values for name, values in value.items()}
        return value


class Tier(Strict):
    name: str = Field(pattern=_NAME)
    description: str = ""
    engine: EngineName = "vllm"
    schedule: str | None = None
    timeout_s: int = Field(default=3600, ge=1)
    priority_class: str | None = None
    queue: str | None = None
    #: Runs a cell the judge finds INCONCLUSIVE may take in this tier (`fleet submit --max-runs` wins;
    #: neither: fleet.judge.noisy.DEFAULT_MAX_RUNS). More buys detection of noisy metrics for the time of
    #: more engine starts, which a tier with a longer budget can spend.
    max_runs: int | None = Field(default=None, ge=1, le=20)
    workload: Workload = Field(default_factory=Workload)
    engine_options: dict[str, Any] = Field(default_factory=dict)
    cells: list[TierEntry] = Field(min_length=1)


def model_slug(model: str) -> str:
    """A file-name-safe short name: `bundled:tiny-stdlib/target` -> `tiny-stdlib-target`."""
    name = model.split(":", 1)[1] if model.startswith("bundled:") else model
    name = name.rstrip("/")
    if "/" in name and not model.startswith("bundled:"):
        name = name.rsplit("/", 1)[1] if name.startswith("/") else name.split("/", 1)[1]
    return re.sub(r"[^a-z0-9.]+", "-", name.lower()).strip("-")


class Cell(Strict):
    """The unit of work: one variant on one model and draft, on one hardware pool, with one workload."""

    schema_version: Literal[1] = 1
    tier: str
    variant: Variant
    model: str
    draft_model: str | None = None
    hardware: Hardware
    workload: Workload
    engine: EngineName
    engine_options: dict[str, Any] = Field(default_factory=dict)
    timeout_s: int = Field(default=3600, ge=1)
    #: This cell's value on each execution axis of its tier entry (empty: the engine's defaults).
    execution: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _drop_derived_id(cls, data: Any) -> Any:
        # `id` is derived and written out for readers; accept it back only if it still agrees.
        if isinstance(data, dict) and "id" in data:
            data = dict(data)
            written = data.pop("id")
            derived = cls.model_validate(data).id
            if written != derived:
                raise ValueError(f"id {written!r} does not match the cell's contents ({derived!r})")
        return data

    @field_validator("execution")
    @classmethod
    def _known_axes(cls, value: dict[str, str]) -> dict[str, str]:
        for name, setting in value.items():
            if setting not in AXES.get(name, ()):
                raise ValueError(f"unknown execution axis value {name}={setting!r} (known: "
                                 f"{', '.join(f'{n}={v}' for n, values in AXES.items() for v in values)})")
        return value

    @field_validator("model")
    @classmethod
    def _model_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("model must not be empty")
        return value

    @computed_field  # type: ignore[prop-decorator]
    @property
    def id(self) -> str:
        """`variant__model__hardware`, then `__cudagraph=full,prefix_caching=on` for a cell with execution
        axes; a cell without keeps the id it always had, so its baselines, history and evidence match."""
        base = f"{self.variant.name}__{model_slug(self.model)}__{self.hardware.name}"
        return f"{base}{ID_SEPARATOR}{execution_id(self.execution)}" if self.execution else base

    @property
    def baseline_key(self) -> tuple[str, str, str]:
        """Baselines are keyed by hardware, variant and target model, NOT by execution axes.

        Cells that differ only in how the engine executes share their baseline on purpose: the invariant
        the axes test is that acceptance does not depend on execution, so the variant's recorded acceptance
        is what every execution of it must reach (a collapse under prefix caching is then a regression
        against the baseline as well as a divergence between cells). A baseline records one workload,
        though (Baseline.dataset): a cell on other prompts is NO_BASELINE against it (fleet.judge.verdicts).
        """
        return (self.hardware.name, self.variant.name, model_slug(self.model))
