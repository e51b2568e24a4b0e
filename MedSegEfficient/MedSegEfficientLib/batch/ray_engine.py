"""The batch engine on Ray (``medseg batch --engine ray``; ``pip install 'medsegefficient[cluster]'``): one actor
per GPU, or N CPU actors, each holding the model, with the cases handed out one at a time to idle actors.

Only the driver writes the manifest, one line per finished case, so it stays true whatever a worker does. An actor
that dies mid-case (its process killed, its node lost, out of memory) is replaced and its case goes to another
actor, each case at most ``MAX_ATTEMPTS`` times. On a cluster the workers read the inputs and write the outputs
themselves, so both must be on storage every node sees under the same paths (docs/batch.md).
"""

from __future__ import annotations

import os
import socket
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from MedSegEfficientLib.batch.cases import Case
from MedSegEfficientLib.batch.ledger import MAX_ATTEMPTS, BatchSummary, Ledger
from MedSegEfficientLib.batch.manifest import Entry, Manifest
from MedSegEfficientLib.batch.worker import WorkerSettings, load_segmenter, segment_case
from MedSegEfficientLib.errors import Cancelled, MedSegError

_LOCAL_OBJECT_STORE_BYTES = 128 * 2**20  # only paths and small dicts travel through it


@dataclass(frozen=True)
class RayPlacement:
    actors: int
    gpus_per_actor: float  # 0 for CPU actors
    cpus_per_actor: float


class SegmentActor:
    """One Ray worker process with the model loaded once (wrapped by ``ray.remote`` at run time)."""

    def __init__(self, settings: WorkerSettings) -> None:
        self._segmenter = load_segmenter(settings)
        self._where = socket.gethostname()

    def pid(self) -> int:
        return os.getpid()

    def segment(self, input_path: str, output_path: str) -> dict[str, Any]:
        return segment_case(self._segmenter, input_path, output_path, self._where)


def import_ray(local: bool = False):
    """Ray, imported; ``local``: a Ray this batch starts for itself on this machine, whose GCS, raylet, agents and
    workers then listen on loopback only. (Ray takes a loopback node address for "this machine's reachable one",
    and binds its servers to that, unless it runs as it does where clusters are off: ``ENABLE_RAY_CLUSTER``.)"""
    if local:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # read by Ray's processes when they start
    try:
        import ray
        import ray._private.ray_constants as ray_constants
    except ImportError:
        raise MedSegError("--engine ray needs Ray: pip install 'medsegefficient[cluster]' (or pip install ray)") from None
    if local:
        ray_constants.ENABLE_RAY_CLUSTER = False  # this process may have imported Ray before the variable was set
    return ray


def _ray_running() -> bool:
    import sys

    return "ray" in sys.modules and sys.modules["ray"].is_initialized()


def plan_placement(device: str, workers: int | None, cluster_gpus: float, cluster_cpus: float,
                   gpus_per_worker: float = 1.0) -> RayPlacement:
    """One actor per GPU (``gpus_per_worker`` of a GPU each) when the device allows CUDA and the cluster has
    GPUs; otherwise ``workers`` CPU actors (default 1) sharing the cluster's CPUs."""
    if gpus_per_worker <= 0 or (gpus_per_worker > 1 and gpus_per_worker != int(gpus_per_worker)):
        raise MedSegError(f"--gpus-per-worker must be a fraction of one GPU or a whole number, not {gpus_per_worker}")
    use_gpu = device in ("auto", "cuda") or device.startswith("cuda")
    if use_gpu and cluster_gpus >= gpus_per_worker:
        fitting = int(cluster_gpus // gpus_per_worker)
        actors = workers or fitting
        if actors > fitting:
            raise MedSegError(f"{actors} GPU workers need {actors * gpus_per_worker:g} GPUs; the cluster has "
                              f"{cluster_gpus:g}")
        return RayPlacement(actors, gpus_per_worker, 1.0)
    if device.startswith("cuda"):
        raise MedSegError(f"--device {device}: the Ray cluster has no GPU")
    actors = workers or 1
    return RayPlacement(actors, 0.0, max(1.0, cluster_cpus // actors))


def run_ray(cases: list[Case], manifest: Manifest, settings: WorkerSettings, workers: int | None,
            address: str | None = None, gpus_per_worker: float = 1.0,
            on_entry: Callable[[Entry], None] = lambda entry: None,
            on_start: Callable[[RayPlacement], None] = lambda placement: None) -> BatchSummary:
    """Every case not already done on Ray actors; a local Ray is started (and stopped) when no ``address`` is
    given and none runs (RAY_ADDRESS is honoured)."""
    ledger = Ledger(cases, manifest, on_entry)
    if not ledger.pending:
        return ledger.summary
    local = address is None and "RAY_ADDRESS" not in os.environ
    ray = import_ray(local=local and not _ray_running())
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network access the user did not ask for
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 **({"object_store_memory": _LOCAL_OBJECT_STORE_BYTES} if local else {}))
    try:
        resources = ray.cluster_resources()
        placement = plan_placement(settings.device, workers, resources.get("GPU", 0.0), resources.get("CPU", 1.0),
                                   gpus_per_worker)
        on_start(placement)
        device = "cuda" if placement.gpus_per_actor else "cpu"
        threads = int(placement.cpus_per_actor)
        actor_settings = WorkerSettings(settings.model, device, settings.fast, threads)
        remote = ray.remote(num_gpus=placement.gpus_per_actor, num_cpus=placement.cpus_per_actor,
                            max_restarts=0)(SegmentActor)
        _dispatch(ray, ledger, lambda: remote.remote(actor_settings), placement.actors)
    except KeyboardInterrupt:
        raise Cancelled("cancelled by the user; the manifest lists the cases that finished") from None
    finally:
        if started_here:
            ray.shutdown()
    return ledger.summary


def _dispatch(ray, ledger: Ledger, new_actor: Callable[[], Any], actors: int) -> None:
    """Hands each idle actor the next case; replaces an actor that died and requeues its case."""
    pending = deque(ledger.pending)
    ledger.pending = []
    idle = [new_actor() for _ in range(actors)]
    replacements_left = MAX_ATTEMPTS * actors  # a model that cannot load anywhere ends the run, not a loop
    running: dict[Any, tuple[Any, Case]] = {}
    last_death = ""
    while pending or running:
        while pending and idle:
            actor, case = idle.pop(), pending.popleft()
            running[actor.segment.remote(str(case.input), str(case.output))] = (actor, case)
        if not running:  # cases left and no actor: every replacement died too
            for case in pending:
                ledger.record(case, {"status": "failed", "seconds": 0.0,
                                     "error": f"no Ray worker could run it: {last_death}"})
            return
        ready, _ = ray.wait(list(running), num_returns=1)
        for reference in ready:
            actor, case = running.pop(reference)
            try:
                outcome = ray.get(reference)
            except ray.exceptions.RayActorError as error:
                last_death = _first_line(error)
                ray.kill(actor)
                if ledger.worker_died(case, "its Ray actor died"):
                    pending.appendleft(case)
                if replacements_left > 0:
                    replacements_left -= 1
                    idle.append(new_actor())
                continue
            except ray.exceptions.RayError as error:
                outcome = {"status": "failed", "seconds": 0.0, "error": f"Ray: {_first_line(error)}"}
            ledger.record(case, outcome)
            idle.append(actor)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


__all__ = ["RayPlacement", "SegmentActor", "import_ray", "plan_placement", "run_ray"]
