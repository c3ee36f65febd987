"""What fitting into vLLM's CI means: its agent queues and devices, its retry of lost agents, and how its
pipeline generator reads `source_file_dependencies` (path prefixes only) against Buildkite's glob
`if_changed`.

The names come from vllm-project/ci-infra's pipeline generator (buildkite/pipeline_generator/:
constants.py, amd.py, buildkite_step.py, plugin/docker_plugin.py) and from vLLM's own
.buildkite/test_areas/spec_decode.yaml; fleet.plan.pipelines builds the pipelines from them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["AGENT_LOST_RETRY", "DOCKER_PLUGIN", "VLLM_DEVICES", "VLLM_QUEUES", "dependency_globs",
           "dependency_prefixes"]

#: vLLM's Buildkite agent queue for each of fleet's pools (jobs/hardware.yaml), from vllm-project/ci-infra
#: buildkite/pipeline_generator/constants.py (AgentQueue, DEVICE_TO_QUEUE) and amd.py (the MI300 queue);
#: a step with no device runs on gpu_1_queue, vLLM's L4 agents. `--queue POOL=QUEUE` overrides any.
VLLM_QUEUES: Mapping[str, str] = {"l4": "gpu_1_queue", "a100": "a100_queue", "h100": "mithril-h100-pool",
                                  "h200": "H200", "mi300": "amd_mi300_1",
                                  "cpu": "cpu_queue_premerge_us_east_1"}
#: The `device:` a vLLM test-area step names for each pool (ci-infra's DeviceType); L4 is the default.
VLLM_DEVICES: Mapping[str, str | None] = {"l4": None, "a100": "a100", "h100": "h100", "h200": "h200",
                                          "mi300": "mi300_1", "cpu": "cpu"}
#: Buildkite gives a job whose agent went away exit status -1 ("agent lost"), and the signal reason
#: agent_stop to one whose agent was stopped under it (a spot instance, a scale-in): both are retried,
#: as vLLM's generator retries exit status -1 (ensure_exit_status_negative_one_retry) and AMD's agent_stop.
AGENT_LOST_RETRY: Mapping[str, Any] = {"automatic": [{"exit_status": -1, "limit": 2},
                                                     {"signal_reason": "agent_stop", "limit": 2}]}
#: The Docker plugin vLLM's CI runs its GPU steps with (ci-infra plugin/docker_plugin.py).
DOCKER_PLUGIN = "docker#v5.2.0"
_WILDCARD = re.compile(r"[*?\[{]")


def dependency_globs(patterns: Sequence[str]) -> dict[str, list[str]]:
    """Buildkite's `if_changed` for variants' source_file_dependencies, which name path prefixes as vLLM's
    generator reads them (a folder with a trailing slash; a file; a name without a suffix is either, so
    `vllm/x` covers vllm/x and vllm/x/...), a `!` one excluded, and fleet's globs (`*eagle*.py`) as they
    are."""
    include: list[str] = []
    exclude: list[str] = []
    for raw in patterns:
        target = exclude if raw.startswith("!") else include
        pattern = raw.removeprefix("!")
        if _WILDCARD.search(pattern):
            globs = [pattern]
        elif pattern.endswith("/"):
            globs = [f"{pattern}**"]
        elif "." in pattern.rsplit("/", 1)[-1]:
            globs = [pattern]  # a file
        else:
            globs = [pattern, f"{pattern}/**"]
        target.extend(glob for glob in globs if glob not in target)
    return {"include": include, **({"exclude": exclude} if exclude else {})}


def dependency_prefixes(patterns: Sequence[str]) -> list[str]:
    """vLLM's `source_file_dependencies`, which its generator matches as path prefixes only: a glob
    becomes the folder before its first wildcard (wider, so no change that matters is missed), and a
    prefix inside another one is dropped."""
    prefixes: set[str] = set()
    exclusions: set[str] = set()
    for raw in patterns:
        pattern = raw.removeprefix("!")
        match = _WILDCARD.search(pattern)
        if match is not None:
            head = pattern[:match.start()]
            pattern = head[:head.rfind("/") + 1]  # "" where the wildcard is in the first segment
            if raw.startswith("!"):
                continue  # an exclusion widened would exclude what it did not mean to
        (exclusions if raw.startswith("!") else prefixes).add(pattern)
    if "" in prefixes:  # a wildcard in the first segment: vLLM's matcher has no "any file", so its code
        prefixes = (prefixes - {""}) | {"vllm/"}

    def inside_another(prefix: str) -> bool:
        return any(prefix != other and other.endswith("/") and prefix.startswith(other) for other in prefixes)

    kept = sorted(p for p in prefixes if not inside_another(p))
    return kept + sorted(f"!{p}" for p in exclusions)
