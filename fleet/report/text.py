"""The human report, in the layout RFC #28135 proposes, so vLLM reviewers read what they asked for.

The PASS and FAIL forms follow the RFC's sample output line by line. fleet adds what the RFC leaves
open: forms for ERROR, SKIPPED, NO_BASELINE and INCONCLUSIVE cells, the exact commands to update a
baseline and to bisect (each on its own line under the RFC's step, so the RFC's lines stay intact),
` on <hardware>` in the Test line when a report spans several hardware pools, and a summary line.

Numbers are formatted by metric name, as the RFC's example does (see `metric_format`):

    suffix                    value and bounds   expected shown with at least
    _rate, _fraction          3 decimals         2 decimals    0.765 within [0.675, 0.825] (0.75)
    _ms                       1 decimal          1 decimal     44.8 within [37.4, 50.6] (44.0)
    speedup, _length, _len    2 decimals         2 decimals    2.08 within [1.79, 2.42] (2.10)
    _s (seconds)              3 decimals         1 decimal
    _per_s (throughput)       1 decimal          1 decimal
    anything else             3 decimals below 10, 1 decimal from 10 on

A trailing position index (`_pos0`, `_0`) is ignored when matching. Rounding is half-up, once, on
the value's 12-significant-digit decimal form, so float noise (1.7850000000000001) rounds as the
decimal number a reader sees: 1.785 -> 1.79, 2.415 -> 2.42, 10.455 -> 10.5, as the RFC prints them.
One RFC bound differs: 12.3 ±15% has hi = 14.145, which the RFC prints as 14.2 (rounded twice, or
up); fleet prints 14.1, the correctly rounded value. When rounding would print a passing value
outside its printed bounds (or a failing one inside), the line gets more decimals until what is
printed agrees with the verdict.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import PurePath

from fleet.judge.verdicts import MISSING_BASELINE, baseline_record_command, bisect_command
from fleet.model import Baseline, CellVerdict, MetricVerdict, RunReport, RunResult
from fleet.report import differential
from fleet.report.limits import band_text, fmt_pct
from fleet.report.numbers import fmt_expected, fmt_number, metric_format

HEADER = "===== Speculative Decoding Regression Test Results ====="
FOOTER = "=" * 49
SEPARATOR = "---"
PASS_MARK = "✓"
FAIL_MARK = "✗"
LOG_TAIL_LINES = 10
#: The failure reasons' guide, relative to the repository root; each reason is an anchor in it.
TROUBLESHOOTING_DOC = "docs/troubleshooting.md"

_STATUS_LINE = {
    "PASS": f"{PASS_MARK} PASSED",
    "FAIL": f"{FAIL_MARK} FAILED",
    "ERROR": "⚠ ERROR",
    "SKIPPED": "- SKIPPED",
    "NO_BASELINE": "? NO BASELINE",
    "INCONCLUSIVE": "? INCONCLUSIVE",
}
_VARIANT_NAMES = {
    "eagle3": "Eagle3",
    "eagle": "EAGLE",
    "ngram": "N-gram",
    "ngram_gpu": "N-gram (GPU)",
    "mtp": "MTP",
    "medusa": "Medusa",
    "suffix": "Suffix",
    "draft_model": "Draft model",
}
_DATASET_NAMES = {"sharegpt": "ShareGPT", "mt-bench": "MT-Bench", "gsm8k": "GSM8K", "humaneval": "HumanEval"}
def fmt_duration(started_at: str | None, finished_at: str | None) -> str:
    start, end = _parse_time(started_at), _parse_time(finished_at)
    if start is None or end is None:
        return "unknown"
    minutes, seconds = divmod(max(0, round((end - start).total_seconds())), 60)
    return f"{minutes}m {seconds}s"


def render_text(
    report: RunReport, results: Mapping[str, RunResult], baselines: Mapping[str, Baseline]
) -> str:
    """The whole report; `results` and `baselines` are keyed by cell id and may lack any cell."""
    hardware_pools = {cell.hardware for cell in report.cells}
    lines = [HEADER, ""]
    for index, cell in enumerate(report.cells):
        if index:
            lines += ["", SEPARATOR, ""]
        lines += _cell_block(
            cell,
            results.get(cell.cell_id),
            baselines.get(cell.cell_id),
            tier=report.tier,
            show_hardware=len(hardware_pools) > 1,
        )
    if report.cells:
        lines.append("")
    if report.differentials:
        lines += [SEPARATOR, "", *differential.text_lines(report), ""]
    lines += [summary_line(report), "", FOOTER]
    return "\n".join(lines) + "\n"


def summary_line(report: RunReport) -> str:
    counts: Counter[str] = Counter(cell.status for cell in report.cells)
    parts = [f"{counts['PASS']} passed", f"{counts['FAIL']} failed"]
    for status, label in (
        ("ERROR", "errored"),
        ("NO_BASELINE", "without baseline"),
        ("INCONCLUSIVE", "inconclusive"),
        ("SKIPPED", "skipped"),
    ):
        if counts[status]:
            parts.append(f"{counts[status]} {label}")
    total = len(report.cells)
    pairs = differential.summary(report)
    return (
        f"Run {report.run_id} (tier {report.tier}, {report.backend}): {total} cell{'s' * (total != 1)}: "
        f"{', '.join(parts)}{'; ' + pairs if pairs else ''} — overall {report.status} "
        f"(exit {report.exit_code})"
    )


def metric_lines_pass(metrics: Iterable[MetricVerdict]) -> list[str]:
    """The RFC's aligned `name:  value within [lo, hi] (expected: E ±P%) ✓` lines."""
    rows = [_metric_texts(m) for m in metrics]
    if not rows:
        return []
    name_w = max(len(r.name) for r in rows) + 3
    value_w = max(len(r.value) for r in rows)
    bounds_w = max(len(r.bounds) for r in rows)
    out = []
    for r in rows:
        mark = PASS_MARK if r.status == "PASS" else FAIL_MARK
        verb = "within" if r.status == "PASS" else "outside"
        if r.status == "PASS" and r.beyond:
            verb = "better than"  # a significant improvement: outside the band on the good side
        out.append(
            f"  {(r.name + ':').ljust(name_w)}{r.value.ljust(value_w)} {verb} "
            f"{r.bounds.ljust(bounds_w)} (expected: {r.expected}) {mark}"
        )
    return out


def metric_line_fail(metric: MetricVerdict) -> str:
    """The RFC's `  - name: value outside range [lo, hi] (expected: E ±P%)` line."""
    r = _metric_texts(metric)
    if metric.observed is None:
        return f"  - {r.name}: missing from result (expected: {r.expected})"
    return f"  - {r.name}: {r.value} outside range {r.bounds} (expected: {r.expected})"


@dataclass(frozen=True)
class _MetricTexts:
    name: str
    status: str
    value: str
    bounds: str
    expected: str
    beyond: bool = False


def _metric_texts(m: MetricVerdict) -> _MetricTexts:
    expected = m.expected if m.expected is not None else (m.observed or 0.0)
    fmt = metric_format(m.metric, expected)
    decimals = _decimals_agreeing_with_verdict(m, fmt.decimals)
    value = "missing" if m.observed is None else fmt_number(m.observed, decimals)
    bounds = "[?, ?]"
    if m.lo is not None and m.hi is not None:
        bounds = f"[{fmt_number(m.lo, decimals)}, {fmt_number(m.hi, decimals)}]"
    expected_text = "?" if m.expected is None else fmt_expected(m.expected, fmt)
    if m.tolerance_pct is not None:
        expected_text += f" ±{fmt_pct(m.tolerance_pct)}%"
    elif m.band_pct is not None:
        expected_text += f"; {band_text(m)}"
    beyond = (m.observed is not None and m.lo is not None and m.hi is not None
              and not m.lo <= m.observed <= m.hi)
    return _MetricTexts(m.metric, m.status, value, bounds, expected_text, beyond)


def _decimals_agreeing_with_verdict(m: MetricVerdict, decimals: int) -> int:
    if m.observed is None or m.lo is None or m.hi is None or m.status not in ("PASS", "FAIL"):
        return decimals
    for extra in range(7):
        d = decimals + extra
        value, lo, hi = (Decimal(fmt_number(x, d)) for x in (m.observed, m.lo, m.hi))
        if (lo <= value <= hi) == (m.status == "PASS"):
            return d
    return decimals


def _cell_block(
    cell: CellVerdict,
    result: RunResult | None,
    baseline: Baseline | None,
    *,
    tier: str,
    show_hardware: bool,
) -> list[str]:
    lines = [
        f"Test: {_test_title(cell, show_hardware)}",
        f"Status: {_STATUS_LINE[cell.status]}",
    ]
    if result is not None:
        lines.append(f"Duration: {fmt_duration(result.provenance.started_at, result.provenance.finished_at)}")
    lines.append("")
    if cell.status == "PASS":
        lines += _pass_body(cell, result)
    elif cell.status == "FAIL":
        lines += _fail_body(cell, result, baseline, tier=tier)
    elif cell.status == "ERROR":
        lines += _error_body(cell)
    elif cell.status == "NO_BASELINE":
        lines += _no_baseline_body(cell, result, tier=tier)
    elif cell.status == "INCONCLUSIVE":
        lines += _inconclusive_body(cell)
    else:
        lines.append(f"Reason: {cell.message}")
    return lines


def _pass_body(cell: CellVerdict, result: RunResult | None) -> list[str]:
    lines = [f"Baseline: {_file_name(cell.baseline_path)}", "", "Metrics (all within tolerance):"]
    lines += metric_lines_pass(cell.metrics)
    if result is not None:
        lines += ["", "Details:", *_details(result)]
    return lines


def _fail_body(
    cell: CellVerdict, result: RunResult | None, baseline: Baseline | None, *, tier: str
) -> list[str]:
    lines = ["Regression detected:"]
    lines += [metric_line_fail(m) for m in cell.metrics if m.status == "FAIL"]
    lines += ["", f"Baseline: {_file_name(cell.baseline_path)}"]
    if baseline is not None:
        lines.append(f"Last updated: {baseline.last_updated or 'unknown'}")
    commit = _commit(result)
    lines.append(f"Commit: {commit or 'unknown'}")
    good = baseline.baseline_commit if baseline is not None else None
    # The baseline exists (it judged the cell): replacing it needs --update, and only this cell's variant.
    root = PurePath(cell.baseline_path).parent.parent.as_posix() if cell.baseline_path else None
    record = baseline_record_command(result.cell.tier if result is not None else tier, cell.hardware, root,
                                     variant=cell.variant, update=True)
    failed = next((m.metric for m in cell.metrics if m.status == "FAIL"), None)
    lines += [
        "",
        "Action Required:",
        "  1. Investigate recent changes to spec decode code",
        "  2. Check if this is an intentional change requiring baseline update",
        f"     {record}",
        "  3. If regression is real, bisect to find problematic commit",
    ]
    engine = result.provenance.engine if result is not None else None
    if result is not None and not result.provenance.vllm_commit and engine != "vllm":
        # `--bad reference 0.1.0` is no commit: the reference engine is not vLLM, nothing to bisect in it.
        lines.append(f"     (the result came from the {engine} engine, not a vLLM build: bisect the vLLM "
                     "commits once a vLLM run of this cell fails)")
    else:
        vllm_commit = result.provenance.vllm_commit if result is not None else None
        lines.append(f"     {bisect_command(good, vllm_commit, cell.cell_id, failed)}")
    return lines


def troubleshooting_link(reason: str) -> str:
    """Where docs/troubleshooting.md explains a failure reason (its anchor is the reason itself)."""
    return f"{TROUBLESHOOTING_DOC}#{reason}"


def _error_body(cell: CellVerdict) -> list[str]:
    error = cell.error
    if error is None:
        return [f"Error: {cell.message}"]
    lines = [f"Error ({error.category}, {error.reason}): {error.message}"]
    if error.exit_code is not None:
        lines.append(f"Exit code: {error.exit_code}")
    lines.append(f"Attempts: {cell.attempts}")
    lines.append(f"Troubleshooting: {troubleshooting_link(error.reason)}")
    tail = [line for line in error.log_tail.splitlines() if line.strip()][-LOG_TAIL_LINES:]
    if tail:
        lines += ["", f"Log tail (last {len(tail)} lines):", *(f"  | {line}" for line in tail)]
    lines += ["", "Action Required:"]
    if error.category == "infrastructure":
        lines += [
            "  1. Rerun the cell: infrastructure failures are often transient",
            f"  2. If it fails again, check the {cell.hardware} nodes (GPU health, driver, image pull)",
        ]
    else:
        lines += [
            "  1. Fix the input named in the error above (tier, variant, model or option)",
            "  2. Rerun the cell",
        ]
    return lines


def _no_baseline_body(cell: CellVerdict, result: RunResult | None, *, tier: str) -> list[str]:
    # A baseline that is there but cannot judge the cell (recorded over other engine starts) says why.
    stale = bool(cell.message) and not cell.message.startswith(MISSING_BASELINE)
    lines = [f"Baseline cannot judge this cell: {cell.message}" if stale
             else f"No baseline: {cell.baseline_path or 'none recorded for this cell'}"]
    if result is not None and result.metrics:
        lines += ["", "Observed (not judged):"]
        width = max(len(name) for name in result.metrics) + 3
        for name, value in result.metrics.items():
            decimals = metric_format(name, value).decimals
            lines.append(f"  {(name + ':').ljust(width)}{fmt_number(value, decimals)}")
    root = PurePath(cell.baseline_path).parent.parent.as_posix() if cell.baseline_path else None
    record = baseline_record_command(result.cell.tier if result is not None else tier, cell.hardware, root,
                                     variant=cell.variant, update=stale)
    return [*lines, "", "Action Required:",
            "  1. Record a baseline from repeated runs and submit it for review:", f"     {record}"]


def _inconclusive_body(cell: CellVerdict) -> list[str]:
    lines = [f"Baseline: {_file_name(cell.baseline_path)}", "", "Metrics:"]
    lines += metric_lines_pass(m for m in cell.metrics if m.status in ("PASS", "FAIL"))
    lines += [f"  {m.metric}: inconclusive ({m.detail})" for m in cell.metrics if m.status == "INCONCLUSIVE"]
    lines += ["", f"Note: {cell.message or 'could not separate noise from change; rerun the cell'}"]
    return lines


def _details(result: RunResult) -> list[str]:
    cell, prov = result.cell, result.provenance
    prompts = result.match.num_prompts if result.match is not None else cell.workload.num_prompts
    dataset = cell.workload.dataset
    source = dataset or cell.workload.prompts
    lines = [f"  Test Prompts: {prompts} ({source})", f"  GPU: {_gpu(result)}"]
    if dataset:
        lines.append(f"  Dataset: {_DATASET_NAMES.get(dataset.lower(), dataset)}")
    lines.append(f"  Commit: {_commit(result) or 'unknown'}")
    timestamp = _parse_time(prov.started_at)
    if timestamp is not None:
        lines.append(f"  Timestamp: {timestamp.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}")
    return lines


def _gpu(result: RunResult) -> str:
    hardware, prov = result.cell.hardware, result.provenance
    if hardware.vendor == "cpu":
        return "CPU"
    name = prov.gpu_name or hardware.gpu_product or hardware.name
    count = prov.gpu_count if prov.gpu_count is not None else hardware.gpu_count
    return f"{name} ({count}x)"


def _commit(result: RunResult | None) -> str | None:
    if result is None:
        return None
    prov = result.provenance
    if prov.vllm_commit:
        return prov.vllm_commit
    if prov.engine_version:
        return f"{prov.engine} {prov.engine_version}"
    return prov.vllm_version


def _test_title(cell: CellVerdict, show_hardware: bool) -> str:
    variant = _VARIANT_NAMES.get(cell.variant, cell.variant)
    # Bundled models are named by their folder (`tiny-stdlib/target`); hub ids by their last part.
    bundled = cell.model.startswith("bundled:")
    short = cell.model.removeprefix("bundled:") if bundled else cell.model.rstrip("/").rsplit("/", 1)[-1]
    suffix = f" on {cell.hardware}" if show_hardware else ""
    return f"{variant} Regression - {short}{suffix}"


def _file_name(path: str | None) -> str:
    return PurePath(path).name if path else "none"


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
