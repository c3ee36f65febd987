"""One place that wires an emulator, a simulated cluster and a kube backend together for a test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fleet.backends.kube.backend import KubeBackend, KubeSettings
from fleet.backends.kube.client import ApiSettings, make_backend
from fleet.plan.render import RenderContext
from tests.kube.cluster import Cluster
from tests.kube.emulator import Emulator, EmulatorServer, Faults

FAST_API = ApiSettings(attempts=12, backoff_s=0.0, connect_timeout_s=1.0, read_timeout_s=0.25)
FAST = KubeSettings(tick_s=0.02, watch_timeout_s=30, pending_check_after_s=60.0, pending_recheck_s=10.0,
                    image_pull_grace_s=120.0, unschedulable_after_s=600.0, watch_backoff_s=0.0,
                    max_watch_failures=50)


@dataclass
class FakeClock:
    """Monotonic time that moves only when the test (or a sleeper) moves it."""

    now: float = 1000.0
    step: float = 0.0
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        self.now += self.step
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


@dataclass
class Rig:
    emulator: Emulator
    server: EmulatorServer
    cluster: Cluster
    clock: FakeClock

    def backend(self, run_id: str, run_dir: Path | None = None, **context: object) -> KubeBackend:
        ctx = RenderContext(run_id=run_id, namespace="fleet", **context)  # type: ignore[arg-type]
        return make_backend(ctx, run_dir=run_dir, host=self.server.url, api_settings=FAST_API, settings=FAST,
                            sleep=self.clock.sleep, clock=self.clock)


@contextmanager
def rig(script: Callable[[str, int], str] | None = None, faults: Faults | None = None,
        **cluster_options: object) -> Iterator[Rig]:
    emulator = Emulator(faults)
    with EmulatorServer(emulator) as server, Cluster(emulator, script, **cluster_options) as cluster:  # type: ignore[arg-type]
        yield Rig(emulator, server, cluster, FakeClock())
