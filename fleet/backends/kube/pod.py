"""The Job container's entry point: run the suite for the cell, then print its result into the pod's log.

The log is where the kube backend reads results from (one GET per Job, with only `pods/log` rights and no
shared volume), so the result is printed last, framed and checksummed (fleet.backends.kube.status). The
process exits with the suite's own exit code, which the Job's podFailurePolicy reads (2: config error,
fail the Job at once).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from fleet.backends.kube.status import encode_result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fleet.backends.kube.pod")
    parser.add_argument("--cell", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--reference-cache", type=Path, default=None)
    args = parser.parse_args(argv)
    command = [sys.executable, "-m", "fleet", "suite", "run",
               "--cell", str(args.cell), "--out", str(args.out)]
    if args.reference_cache is not None:
        command += ["--reference-cache", str(args.reference_cache)]
    sys.stdout.flush()
    exit_code = subprocess.call(command)
    sys.stderr.flush()
    if args.out.exists():
        sys.stdout.write(encode_result(args.out.read_bytes()))
        sys.stdout.flush()
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
