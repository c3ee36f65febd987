"""The real engine: vLLM's offline `LLM`, one child process per configuration. The only module importing vllm.

The parent side (`VllmEngine`) never imports vllm: it asks a child what the installed vLLM can do, runs the
reference and the speculative configuration each in a child of its own (counters are per engine, GPU
memory is freed on exit), and turns the children's JSON into EngineRuns (vllm_results.py). The child side
(`python -m fleet.suite.engines.vllm run JOB RESULT`) imports vllm lazily, builds
`LLM(model, speculative_config=..., disable_log_stats=False, ...)`, measures, and writes raw material only.

Options: engine_options in the cell (see vllm_config.FLEET_OPTIONS for fleet's own; the rest go to
`LLM(...)`), and the environment: FLEET_VLLM_CACHE_ROOT (a compile cache shared by cells, keyed by vLLM
version and hardware), FLEET_VLLM_KEEP_DIR (keep each child's job, result and log there, for evidence).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fleet.model import Cell
from fleet.suite.engines.base import EngineConfigError, EngineFailure, EngineRun, Unsupported
from fleet.suite.engines.vllm_config import (
    READY_MARKER,
    Capabilities,
    cache_root,
    classify_failure,
    flatten_literal,
    log_tail,
    parse_capabilities,
    split_engine_options,
    unsupported_reason,
)
from fleet.suite.engines.vllm_job import child_job
from fleet.suite.engines.vllm_launch import ChildOutcome, child_command, run_child
from fleet.suite.engines.vllm_metrics import request_stats, snapshot_entry
from fleet.suite.engines.vllm_results import build_engine_run

PROBE_TIMEOUT_S = 300.0


def installed_vllm_version() -> str:
    """vLLM's version from its package metadata, without importing it (which takes seconds)."""
    try:
        return "vllm-" + importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        return "vllm-not-installed"


class VllmEngine:
    name = "vllm"

    def __init__(self, *, cache_base: str | None = None, keep_dir: Path | None = None) -> None:
        self.cache_base = cache_base or os.environ.get("FLEET_VLLM_CACHE_ROOT") or None
        keep = keep_dir or os.environ.get("FLEET_VLLM_KEEP_DIR")
        self.keep_dir = Path(keep) if keep else None
        self._capabilities: Capabilities | None = None
        #: The runner keys cached reference runs by this: a vLLM upgrade must not reuse old outputs.
        self.version = installed_vllm_version()
        #: Child processes started, by phase: the suite-overhead benchmark counts engine starts here.
        self.launches: list[dict[str, Any]] = []

    # -- the Engine protocol ---------------------------------------------------------------------

    def unsupported_reason(self, cell: Cell) -> str | None:
        return unsupported_reason(self.capabilities(cell), cell)

    def run_reference(self, cell: Cell, prompts: Sequence[str]) -> EngineRun:
        return self._run(cell, prompts, phase="reference")

    def run_speculative(self, cell: Cell, prompts: Sequence[str], *, latency_only: bool = False) -> EngineRun:
        reason = self.unsupported_reason(cell)
        if reason is not None:
            raise Unsupported(reason)
        return self._run(cell, prompts, phase="speculative", latency_only=latency_only)

    # -- parent side -----------------------------------------------------------------------------

    def _env(self, cell: Cell) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        fleet_options, _ = split_engine_options(cell.engine_options)
        base = fleet_options.get("vllm_cache_root") or self.cache_base
        if base:
            env["VLLM_CACHE_ROOT"] = cache_root(str(base), self.version, cell.hardware.name)
        return env

    def _launch(self, cell: Cell, phase: str, job: dict[str, Any] | None, timeout_s: float) -> ChildOutcome:
        workdir = Path(tempfile.mkdtemp(prefix=f"fleet-vllm-{phase}-"))
        try:
            result_path = workdir / f"{phase}.json"
            args = ["probe", str(result_path)]
            if job is not None:
                job_path = workdir / f"{phase}-job.json"
                job_path.write_text(json.dumps(job), encoding="utf-8")
                args = ["run", str(job_path), str(result_path)]
            outcome = run_child(child_command(*args), workdir=workdir, result_path=result_path,
                                env=self._env(cell), timeout_s=timeout_s)
            self.launches.append({"phase": phase, "wall_s": outcome.wall_s, "returncode": outcome.returncode})
            if self.keep_dir is not None:
                target = self.keep_dir / f"{cell.id}-{phase}-{int(time.time() * 1000)}"
                shutil.copytree(workdir, target)
            return outcome
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _fail(self, outcome: ChildOutcome, phase: str, timeout_s: float) -> EngineFailure:
        kind = classify_failure(outcome.log_text, returncode=outcome.returncode, timed_out=outcome.timed_out,
                                timeout_s=timeout_s, phase=phase)
        return EngineFailure(kind.what, reason=kind.reason, log_tail=log_tail(outcome.log_text),
                             cause=kind.cause, fix=kind.fix)

    def capabilities(self, cell: Cell) -> Capabilities:
        """Probe the installed vLLM once; with a shared cache root, once per vLLM version and hardware."""
        if self._capabilities is None:
            cached = self._capabilities_file(cell)
            raw: dict[str, Any] | None = None
            if cached is not None and cached.is_file():
                with contextlib.suppress(OSError, ValueError):
                    raw = json.loads(cached.read_text(encoding="utf-8"))
            if raw is None:
                if importlib.util.find_spec("vllm") is None:  # the runner reports this as a config error
                    raise ImportError("vllm is not installed in this environment")
                outcome = self._launch(cell, "probe", None, PROBE_TIMEOUT_S)
                if outcome.returncode != 0 or outcome.result is None:
                    raise self._fail(outcome, "probe", PROBE_TIMEOUT_S)
                raw = outcome.result
                if cached is not None:
                    with contextlib.suppress(OSError):
                        cached.parent.mkdir(parents=True, exist_ok=True)
                        cached.write_text(json.dumps(raw), encoding="utf-8")
            self._capabilities = parse_capabilities(raw)
        return self._capabilities

    def _capabilities_file(self, cell: Cell) -> Path | None:
        root = self._env(cell).get("VLLM_CACHE_ROOT")
        return Path(root) / "fleet-capabilities.json" if root else None

    def _run(self, cell: Cell, prompts: Sequence[str], *, phase: str,
             latency_only: bool = False) -> EngineRun:
        job = child_job(cell, prompts, phase, latency_only=latency_only)
        timeout_s = float(cell.timeout_s)
        outcome = self._launch(cell, phase, job, timeout_s)
        result = outcome.result
        if result is not None and result.get("status") == "unsupported":
            raise Unsupported(str(result.get("reason")))
        if result is not None and result.get("status") == "config_error":
            raise EngineConfigError(str(result.get("reason")), where="cell.engine_options",
                                    fix="fix the option vLLM rejected")
        if outcome.returncode != 0 or result is None or result.get("status") != "ok":
            raise self._fail(outcome, phase, timeout_s)
        run = build_engine_run(result, outcome.log_text, phase=phase)
        if phase == "speculative" and run.counters is None:
            raise EngineFailure("vLLM reported no spec-decode counters for a speculative run",
                                reason="no_spec_metrics", log_tail=log_tail(outcome.log_text),
                                cause="log stats disabled, or this vLLM exposes no spec-decode metrics",
                                fix="check that LLM.get_metrics() lists vllm:spec_decode_* metrics")
        return run


# -- child side: everything below runs in the child process and may import vllm -------------------


def probe_capabilities() -> dict[str, Any]:
    """What this vLLM offers: methods, speculative_config keys, LLM arguments, optional modules."""
    import dataclasses
    import importlib.util
    import inspect

    import vllm
    from vllm.engine.arg_utils import EngineArgs

    try:
        from vllm.config import speculative as spec_module
    except ImportError:  # older layouts keep every config in vllm/config.py
        import vllm.config as spec_module
    config_cls = spec_module.SpeculativeConfig
    method_type = getattr(spec_module, "SpeculativeMethod", None)
    methods = flatten_literal(method_type) if method_type is not None else []
    keys = [f.name for f in dataclasses.fields(config_cls)] if dataclasses.is_dataclass(config_cls) else \
        list(getattr(config_cls, "model_fields", {}))
    llm_params = [name for name, p in inspect.signature(vllm.LLM.__init__).parameters.items()
                  if name != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD]
    llm_args = sorted(set(llm_params) | {f.name for f in dataclasses.fields(EngineArgs)})
    commit = None
    with contextlib.suppress(ImportError, AttributeError):
        from vllm import _version

        commit = str(getattr(_version, "__commit_id__", None) or "") or None
    return {
        "vllm_version": vllm.__version__, "vllm_commit": commit, "methods": sorted(set(methods)),
        "speculative_config_keys": sorted(keys), "llm_args": llm_args,
        "modules": {name: importlib.util.find_spec(name) is not None
                    for name in ("arctic_inference", "numba")},
    }


def _example_counts(metrics: Sequence[Any]) -> dict[str, Any]:
    """vLLM's own reading of get_metrics(), as its spec_decode example sums it (an independent check)."""
    from vllm.v1.metrics.reader import Counter, Vector

    counts: dict[str, Any] = {"num_drafts": 0, "num_draft_tokens": 0, "num_accepted_tokens": 0,
                              "accepted_per_position": []}
    names = {"vllm:spec_decode_num_drafts": "num_drafts",
             "vllm:spec_decode_num_draft_tokens": "num_draft_tokens",
             "vllm:spec_decode_num_accepted_tokens": "num_accepted_tokens"}
    for metric in metrics:
        if metric.name in names and isinstance(metric, Counter):
            counts[names[metric.name]] += metric.value
        elif metric.name == "vllm:spec_decode_num_accepted_tokens_per_pos" and isinstance(metric, Vector):
            per_pos = counts["accepted_per_position"]
            per_pos.extend([0] * (len(metric.values) - len(per_pos)))
            for pos, value in enumerate(metric.values):
                per_pos[pos] += value
    return counts


def _prometheus_spec_text() -> str:
    import importlib

    prometheus = importlib.import_module("prometheus_client")  # a vLLM dependency
    text = str(prometheus.generate_latest(prometheus.REGISTRY).decode("utf-8", errors="replace"))
    return "\n".join(line for line in text.splitlines() if "spec_decode" in line and not line.startswith("#"))


def _gpu_facts() -> dict[str, Any]:
    import subprocess

    facts: dict[str, Any] = {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
        rows = [[part.strip() for part in line.split(",")] for line in out.splitlines() if line.strip()]
        if rows:
            facts.update(gpu_name=rows[0][0], driver=rows[0][1] if len(rows[0]) > 1 else None,
                         gpu_count=len(rows))
    except (OSError, subprocess.SubprocessError):
        import torch

        if torch.cuda.is_available():
            facts.update(gpu_name=torch.cuda.get_device_name(0), gpu_count=torch.cuda.device_count())
    return facts


def _engine_facts(llm: Any) -> dict[str, Any]:
    import torch
    import transformers
    import vllm

    facts: dict[str, Any] = {"vllm_version": vllm.__version__, "engine_version": vllm.__version__,
                             "torch": torch.__version__, "cuda": torch.version.cuda,
                             "transformers": transformers.__version__}
    facts.update(_gpu_facts())
    with contextlib.suppress(ImportError, AttributeError):
        from vllm import _version

        facts["vllm_commit"] = str(_version.__commit_id__).removeprefix("g")
    extra: dict[str, Any] = {"vllm_env": {k: v for k, v in os.environ.items() if k.startswith("VLLM_")}}
    config = llm.llm_engine.vllm_config
    readers: dict[str, Callable[[], Any]] = {
        "dtype": lambda: str(config.model_config.dtype).removeprefix("torch."),
        "async_scheduling": lambda: bool(config.scheduler_config.async_scheduling),
        "model_runner": lambda: "v2" if config.use_v2_model_runner else "v1",
    }
    extras: dict[str, Callable[[], Any]] = {
        "enforce_eager": lambda: config.model_config.enforce_eager,
        "max_num_seqs": lambda: config.scheduler_config.max_num_seqs,
        "max_num_batched_tokens": lambda: config.scheduler_config.max_num_batched_tokens,
        "enable_prefix_caching": lambda: config.cache_config.enable_prefix_caching,
        "compilation_mode": lambda: str(config.compilation_config.mode),
        "cudagraph_mode": lambda: str(config.compilation_config.cudagraph_mode),
        "load_format": lambda: str(config.load_config.load_format),
        "speculative_method": lambda: config.speculative_config.method if config.speculative_config else None,
        "num_speculative_tokens": lambda: (config.speculative_config.num_speculative_tokens
                                           if config.speculative_config else None),
    }
    for key, read in readers.items():
        with contextlib.suppress(Exception):
            facts[key] = read()
    for key, read in extras.items():
        with contextlib.suppress(Exception):
            extra[key] = read()
    facts["extra"] = extra
    return facts


def _request_record(output: Any, index: int) -> dict[str, Any]:
    completion = output.outputs[0]
    return {"index": index, "prompt_tokens": len(output.prompt_token_ids or []),
            "token_ids": [int(t) for t in completion.token_ids], "text": completion.text,
            "stats": request_stats(getattr(output, "metrics", None))}


def _unknown_llm_args(job: dict[str, Any]) -> list[str]:
    import dataclasses
    import inspect

    import vllm
    from vllm.engine.arg_utils import EngineArgs

    known = set(inspect.signature(vllm.LLM.__init__).parameters)
    known |= {f.name for f in dataclasses.fields(EngineArgs)}
    return sorted(set(job["llm_args"]) - known)


def child_run(job: dict[str, Any]) -> dict[str, Any]:
    """Start one engine, warm it up, measure the batch and the single requests; raw results only."""
    phase_s: dict[str, float] = {}
    started = time.perf_counter()
    from vllm import LLM, SamplingParams

    phase_s["import"] = time.perf_counter() - started
    unknown = _unknown_llm_args(job)
    if unknown:
        return {"status": "unsupported", "reason": f"this vLLM's LLM(...) takes no argument {unknown}"}
    mark = time.perf_counter()
    llm = LLM(model=job["model"], speculative_config=job["speculative_config"], **job["llm_args"])
    engine_start_s = time.perf_counter() - mark
    print(READY_MARKER, flush=True)
    params = SamplingParams(temperature=0.0, max_tokens=job["max_tokens"], ignore_eos=job["ignore_eos"])
    mark = time.perf_counter()
    if job["warmup_prompts"]:
        llm.generate(job["warmup_prompts"], params, use_tqdm=False)
        # The measured singles run at batch size 1, a shape the batched warm-up never compiles: without
        # this the first single request of each run paid kernel compilation (docs/judging.md#engine-starts).
        llm.generate(job["warmup_prompts"][:1], params, use_tqdm=False)
    phase_s["warmup"] = time.perf_counter() - mark

    metrics = llm.get_metrics()
    before, own_before, prom_before = [snapshot_entry(m) for m in metrics], _example_counts(metrics), \
        _prometheus_spec_text()
    prompts = job["prompts"]
    outputs: list[Any] = []
    batch_wall_s = 0.0
    if job.get("measure_batch", True):  # a latency-only start times the singles alone
        mark = time.perf_counter()
        outputs = llm.generate(prompts, params, use_tqdm=False)
        batch_wall_s = time.perf_counter() - mark
    phase_s["batch"] = batch_wall_s
    singles = []
    singles_started = time.perf_counter()
    for index in range(job["single_prompts"]):
        mark = time.perf_counter()
        single = llm.generate([prompts[index]], params, use_tqdm=False)[0]
        e2e = time.perf_counter() - mark
        singles.append({**_request_record(single, index), "client_e2e_s": e2e})
    phase_s["singles"] = time.perf_counter() - singles_started
    metrics = llm.get_metrics()
    after, own_after, prom_after = [snapshot_entry(m) for m in metrics], _example_counts(metrics), \
        _prometheus_spec_text()
    phase_s["total_before_facts"] = time.perf_counter() - started
    return {
        "status": "ok", "phase": job["phase"], "engine_start_s": engine_start_s, "phase_s": phase_s,
        "batch": {"wall_s": batch_wall_s, "requests": [_request_record(o, i) for i, o in enumerate(outputs)]},
        "singles": singles,
        "metrics_before": before, "metrics_after": after,
        "vllm_example_counts": {"before": own_before, "after": own_after},
        "prometheus": {"before": prom_before, "after": prom_after},
        "provenance": _engine_facts(llm),
    }


def _write(path: str, document: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(document), encoding="utf-8")


def main(argv: list[str]) -> int:
    """`probe RESULT` or `run JOB RESULT`; exits without waiting for vLLM's own shutdown."""
    if not ((argv[:1] == ["probe"] and len(argv) == 2) or (argv[:1] == ["run"] and len(argv) == 3)):
        print("usage: python -m fleet.suite.engines.vllm probe RESULT | run JOB RESULT", file=sys.stderr)
        return 2
    code = 0
    try:
        if argv[0] == "probe":
            _write(argv[1], probe_capabilities())
        else:
            _write(argv[2], child_run(json.loads(Path(argv[1]).read_text(encoding="utf-8"))))
    except BaseException:  # the parent classifies the failure from this log
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # The parent kills this process session next; vLLM's orderly shutdown would only cost time here.
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
