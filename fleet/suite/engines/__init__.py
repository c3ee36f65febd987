"""Engines behind the suite's Engine port; each is imported only when a cell asks for it."""

from __future__ import annotations

from fleet.errors import ConfigError
from fleet.suite.engines.base import Engine


def get_engine(name: str) -> Engine:
    if name == "reference":
        from fleet.suite.engines.reference import ReferenceEngine

        return ReferenceEngine()
    if name == "vllm":
        from fleet.suite.engines.vllm import VllmEngine

        return VllmEngine()
    raise ConfigError(f"unknown engine {name!r}", fix="use 'reference' (CPU) or 'vllm' (GPU)")
