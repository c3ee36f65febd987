"""Which failed attempts are worth another try: a pure policy over the failure's category and reason.

A config error is never retried (the same input fails the same way), a regression is never a failure
at all (it is a verdict), and infrastructure failures are retried within a budget per reason, because a
retry costs GPU time and some reasons (a deadline on a cell that is simply too slow) rarely clear.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from fleet.model import ResultError

#: Attempts allowed per infrastructure reason, the first included.
DEFAULT_BUDGETS: Mapping[str, int] = MappingProxyType({
    "DeadlineExceeded": 1,
    "Cancelled": 1,
})
DEFAULT_INFRASTRUCTURE_ATTEMPTS = 2


@dataclass(frozen=True)
class RetryPolicy:
    budgets: Mapping[str, int] = field(default_factory=lambda: DEFAULT_BUDGETS)
    default_attempts: int = DEFAULT_INFRASTRUCTURE_ATTEMPTS

    def attempts_allowed(self, error: ResultError) -> int:
        if error.category != "infrastructure":
            return 1
        return self.budgets.get(error.reason, self.default_attempts)

    def should_retry(self, error: ResultError | None, attempts_so_far: int) -> bool:
        return error is not None and attempts_so_far < self.attempts_allowed(error)
