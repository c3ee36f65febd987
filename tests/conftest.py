"""Fixtures shared by the test modules that drive the `fleet` command in process."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fleet.cli import main

#: Runs `fleet ARGV...` and returns (exit code, stdout, stderr).
Fleet = Callable[..., tuple[int, str, str]]


@pytest.fixture
def fleet(capsys: pytest.CaptureFixture[str]) -> Fleet:
    def run(*argv: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exit_info:
            main(list(argv))
        captured = capsys.readouterr()
        code = exit_info.value.code
        return (code if isinstance(code, int) else 0), captured.out, captured.err

    return run
