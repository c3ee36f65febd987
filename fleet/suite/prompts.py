"""The prompts a cell feeds the engine: the bundled set, a JSON list of strings or a JSONL dataset.

Measured prompts are the FIRST `num_prompts` of the list. Warm-up prompts are the LAST
`warmup_prompts` of the whole list: with datasets longer than num_prompts they are prompts that are
never measured, and a list no longer than num_prompts still warms up on real prompts of the same
shape (greedy decoding without prefix caching makes the measured outputs independent of it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fleet.errors import ConfigError
from fleet.model import Workload
from fleet.suite.model_refs import BUNDLED_PREFIX, bundled_path


def prompts_file(reference: str) -> Path:
    """`bundled:tiny-stdlib` -> its prompts.json inside fleet; anything else is a path."""
    if reference.startswith(BUNDLED_PREFIX):
        path = bundled_path(reference[len(BUNDLED_PREFIX) :].strip("/")) / "prompts.json"
        if not path.is_file():
            raise ConfigError(f"no bundled prompt set {reference!r}", where="workload.prompts",
                              fix="use bundled:tiny-stdlib, a .json list of strings or a .jsonl file")
        return path
    return Path(reference).expanduser()


def _read_json_list(path: Path, text: str) -> list[str]:
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"not valid JSON: {err}", where=str(path),
                          fix="a .json prompt file is a list of strings") from err
    if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
        raise ConfigError("expected a JSON list of strings", where=str(path),
                          fix="write the prompts as [\"...\", \"...\"], or use .jsonl with a 'prompt' field")
    return data


def _read_jsonl(path: Path, text: str) -> list[str]:
    prompts: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record: Any = json.loads(line)
        except json.JSONDecodeError as err:
            raise ConfigError(f"not valid JSON: {err.msg}", where=where,
                              fix="each line of a .jsonl file is one JSON object") from err
        if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
            raise ConfigError("expected an object with a string 'prompt' field", where=where,
                              fix='write each line as {"prompt": "..."}')
        prompts.append(record["prompt"])
    return prompts


def read_prompt_file(path: Path) -> list[str]:
    """Every prompt in the file, in order."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ConfigError(f"no prompt file at {path}", where="workload.prompts",
                          cause="nothing put the dataset there: no image carries it, nothing downloads it",
                          fix="in a Kubernetes Job the file comes from the fleet-datasets volume: fill it as "
                              "docs/operating.md ('Datasets') says; elsewhere, fix the path") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read prompt file: {err}", where=str(path),
                          fix="check the path in workload.prompts") from err
    return _read_jsonl(path, text) if path.suffix == ".jsonl" else _read_json_list(path, text)


def load_all_prompts(workload: Workload) -> list[str]:
    path = prompts_file(workload.prompts)
    prompts = read_prompt_file(path)
    if len(prompts) < workload.num_prompts:
        raise ConfigError(
            f"the workload asks for {workload.num_prompts} prompts but the file holds {len(prompts)}",
            where=str(path), fix="lower workload.num_prompts or add prompts",
        )
    return prompts


def load_prompts(workload: Workload) -> list[str]:
    """The measured prompts: the first `workload.num_prompts` of the file."""
    return load_all_prompts(workload)[: workload.num_prompts]


def load_warmup_prompts(workload: Workload) -> list[str]:
    """The warm-up prompts (never measured): the last `workload.warmup_prompts` of the file."""
    if workload.warmup_prompts == 0:
        return []
    return load_all_prompts(workload)[-workload.warmup_prompts :]
