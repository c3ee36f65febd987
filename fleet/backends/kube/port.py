"""The few API calls the kube backend makes, as a port: what they mean, never how HTTP carries them.

fleet.backends.kube.client implements this over the official `kubernetes` client; the backend's logic
(fleet.backends.kube.backend) sees only this protocol, so it does not import `kubernetes` and could run
over any other client.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal, Protocol

from fleet.backends.kube.status import WatchEvent


class ApiError(Exception):
    """A request the API server refused or that never got an answer, after retries where they apply."""

    def __init__(self, status: int, reason: str, message: str = "", retry_after: float | None = None) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after
        super().__init__(f"HTTP {status} {reason}: {message}" if status else f"{reason}: {message}")

    @property
    def transient(self) -> bool:
        """429, 5xx and no answer at all (status 0) clear with time; other 4xx never do."""
        return self.status == 0 or self.status == 429 or self.status >= 500


class KubeApi(Protocol):
    @property
    def requests(self) -> Mapping[str, int]: ...

    def create_job(self, body: dict[str, Any]) -> Literal["created", "exists"]: ...

    def list_jobs(self, selector: str) -> tuple[list[dict[str, Any]], str | None]: ...

    def watch_jobs(self, selector: str, resource_version: str | None,
                   timeout_s: int) -> Iterator[WatchEvent]: ...

    def list_pods(self, selector: str) -> list[dict[str, Any]]: ...

    def pod_log(self, name: str, container: str) -> str | None: ...

    def delete_job(self, name: str) -> bool: ...
