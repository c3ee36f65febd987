"""fleet: catch speculative-decoding regressions in vLLM across a fleet of GPUs.

The package is organised as a pure core (model, catalog expansion, judge, retry and bisection policies)
and a thin shell (backends, the suite's engines, the CLI). See README.md and the module docstrings.
"""
