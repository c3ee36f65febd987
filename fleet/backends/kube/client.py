"""The only module that imports `kubernetes`: the KubeApi port over the official client, with retries.

Requests go through the official client's ApiClient (its configuration, authentication, TLS and urllib3
pool) at the level of `param_serialize` + `call_api`, and bodies stay plain JSON dicts: the manifests are
dicts already (fleet.plan.render), and deserializing every Job into the client's pydantic models would cost
the controller time and memory for nothing it reads.

Retries are data (kopf's pattern): 429 (honouring Retry-After), 5xx, connection errors and timeouts are
retried with backoff by tenacity; every other 4xx is permanent at once. A create that timed out may have
happened: its retry's 409 is then the proof, and the Job is adopted.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import urllib3
import yaml
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from fleet.backends.kube.backend import KubeBackend, KubeSettings
from fleet.backends.kube.port import ApiError
from fleet.backends.kube.status import WatchEvent, parse_watch_line, split_lines
from fleet.errors import ConfigError
from fleet.plan.render import RenderContext
from fleet.plan.retry import RetryPolicy

__all__ = ["ApiSettings", "OfficialKubeApi", "api_client_for", "make_backend"]


@dataclass(frozen=True)
class ApiSettings:
    attempts: int = 8
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 60.0
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0


def api_client_for(*, host: str | None = None, kubeconfig: str | None = None,
                   context: str | None = None) -> Any:
    """An ApiClient for `host` (tests, proxies), else in-cluster config, else the kubeconfig."""
    configuration = k8s_client.Configuration()
    if host is not None:
        configuration.host = host
    else:
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except k8s_config.ConfigException:
            try:
                k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=kubeconfig, context=context, client_configuration=configuration)
            except (k8s_config.ConfigException, OSError) as err:
                raise ConfigError(f"no Kubernetes credentials: {_one_line(err)}", where="kubeconfig",
                                  fix="set KUBECONFIG or --kubeconfig, or run inside the cluster") from err
            except (yaml.YAMLError, ValueError, TypeError, AttributeError, KeyError) as err:
                # The client parses the file with no error of its own for bad YAML or a field of the wrong
                # type (`clusters: 5` is a TypeError deep inside it): one line, not its traceback.
                shown = kubeconfig or "the kubeconfig (KUBECONFIG or ~/.kube/config)"
                raise ConfigError(f"malformed kubeconfig: {type(err).__name__}: {_one_line(err)}",
                                  where=shown, cause="not valid YAML, or a field of the wrong type",
                                  fix="check it with `kubectl config view --kubeconfig FILE`, or pass "
                                      "--kubeconfig with a working one") from err
    configuration.retries = False  # tenacity decides; urllib3's own retries would hide requests
    return k8s_client.ApiClient(configuration)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, ApiError):
        return exc.transient
    return isinstance(exc, urllib3.exceptions.HTTPError | OSError)


class OfficialKubeApi:
    """KubeApi over the official client: one namespace, every call retried by the same rules."""

    def __init__(self, api_client: Any, namespace: str, *, settings: ApiSettings | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.settings = settings or ApiSettings()
        self.requests: Counter[str] = Counter()
        self._sleep = sleep
        self._jobs = f"/apis/batch/v1/namespaces/{quote(namespace)}/jobs"
        self._pods = f"/api/v1/namespaces/{quote(namespace)}/pods"

    # -- one request ----------------------------------------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, ApiError) and exc.retry_after is not None:
            return min(exc.retry_after, self.settings.retry_after_max_s)
        backoff = self.settings.backoff_s * 2 ** (state.attempt_number - 1)
        return float(min(self.settings.backoff_max_s, backoff))

    def _send(self, verb: str, method: str, path: str, *, query: list[tuple[str, str]] | None = None,
              body: dict[str, Any] | None = None, read_timeout_s: float | None = None) -> Any:
        retrying = Retrying(stop=stop_after_attempt(self.settings.attempts), wait=self._wait,
                            retry=retry_if_exception(_transient), sleep=self._sleep, reraise=True)
        timeout = (self.settings.connect_timeout_s, read_timeout_s or self.settings.read_timeout_s)
        for attempt in retrying:
            with attempt:
                self.requests[verb] += 1
                return self._once(method, path, query or [], body, timeout)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def _once(self, method: str, path: str, query: list[tuple[str, str]], body: dict[str, Any] | None,
              timeout: tuple[float, float]) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        serialized = self.api_client.param_serialize(method=method, resource_path=path, query_params=query,
                                                     header_params=headers, body=body,
                                                     auth_settings=["BearerToken"])
        method_, url, header_params, body_, post_params = serialized
        response = self.api_client.call_api(method_, url, header_params=header_params, body=body_,
                                            post_params=post_params, _request_timeout=timeout)
        if not 200 <= response.status <= 299:
            raw = response.read() or b""
            retry_after = response.headers.get("Retry-After")
            try:
                message = str(json.loads(raw).get("message", ""))
            except (ValueError, AttributeError):
                message = raw[:256].decode(errors="replace")
            raise ApiError(response.status, str(response.reason), message,
                           float(retry_after) if retry_after and retry_after.isdigit() else None)
        return response

    def _json(self, verb: str, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._send(verb, method, path, **kwargs)
        data: dict[str, Any] = json.loads(response.read() or b"{}")
        return data

    # -- the port -------------------------------------------------------------------------------------

    def create_job(self, body: dict[str, Any]) -> Literal["created", "exists"]:
        try:
            self._send("create", "POST", self._jobs, body=body)
        except ApiError as err:
            if err.status == 409:
                return "exists"
            raise
        return "created"

    def list_jobs(self, selector: str) -> tuple[list[dict[str, Any]], str | None]:
        data = self._json("list_jobs", "GET", self._jobs, query=[("labelSelector", selector)])
        return list(data.get("items") or []), (data.get("metadata") or {}).get("resourceVersion")

    def watch_jobs(self, selector: str, resource_version: str | None, timeout_s: int) -> Iterator[WatchEvent]:
        query = [("labelSelector", selector), ("watch", "true"), ("allowWatchBookmarks", "true"),
                 ("timeoutSeconds", str(timeout_s))]
        if resource_version:
            query.append(("resourceVersion", resource_version))
        response = self._send("watch", "GET", self._jobs, query=query, read_timeout_s=timeout_s + 30)
        stream = response.response
        try:
            for line in split_lines(stream.stream(65536, decode_content=True)):
                yield parse_watch_line(line)
        finally:
            stream.release_conn()

    def list_pods(self, selector: str) -> list[dict[str, Any]]:
        return list(self._json("list_pods", "GET", self._pods, query=[("labelSelector", selector)])
                    .get("items") or [])

    def pod_log(self, name: str, container: str) -> str | None:
        try:
            response = self._send("log", "GET", f"{self._pods}/{quote(name)}/log",
                                  query=[("container", container)])
        except ApiError as err:
            if err.status in (400, 404):  # gone, or never started: no log to read
                return None
            raise
        data: bytes = response.read() or b""
        return data.decode(errors="replace")

    def delete_job(self, name: str) -> bool:
        try:
            self._send("delete", "DELETE", f"{self._jobs}/{quote(name)}",
                       query=[("propagationPolicy", "Background")])
        except ApiError as err:
            if err.status == 404:
                return False
            raise
        return True


def make_backend(context: RenderContext, *, run_dir: Path | None = None, host: str | None = None,
                 kubeconfig: str | None = None, kube_context: str | None = None,
                 api_settings: ApiSettings | None = None, settings: KubeSettings | None = None,
                 policy: RetryPolicy | None = None, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 nodes: dict[str, set[str]] | None = None) -> KubeBackend:
    """The kube backend for one run, talking to the cluster the credentials (or `host`) point at; `nodes`:
    where earlier backends of the run placed each cell's pods (KubeBackend.nodes), kept up to date."""
    api = OfficialKubeApi(api_client_for(host=host, kubeconfig=kubeconfig, context=kube_context),
                          context.namespace, settings=api_settings, sleep=sleep)
    return KubeBackend(api, context, run_dir=run_dir, settings=settings, policy=policy, sleep=sleep,
                       clock=clock, nodes=nodes)
