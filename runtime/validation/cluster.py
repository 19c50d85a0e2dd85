"""Sweeps on Ray (extra `cluster`): every candidate is one Ray task, placed by Ray on a node of the requested kind.

Nodes say what they are with a Ray node label `device` (`ray start --labels device=x86-avx512`, or `arm64`, `gpu`);
a task asks for a kind with Ray's `label_selector`, so placement is Ray's own scheduling. Large shared inputs (the
FP32 model, the evaluation data) go into the object store once and every task reads them from there. A task that
fails (an exception, or its worker process killed) is retried once by Ray; a task that fails again is returned as a
failure with its reason, never dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from svdq_edge.errors import UserError, first_line

log = logging.getLogger(__name__)
DEVICE_LABEL = "device"


class ClusterError(UserError, RuntimeError):
    """Ray is missing, the cluster cannot be reached, or no node has the requested kind."""


@dataclass(frozen=True)
class Outcome:
    """One task's result (`value`), or its `error` after the retry; where it ran."""

    label: str
    value: Any = None
    error: str | None = None
    node: str | None = None  # Ray node id
    device: str | None = None  # that node's `device` label


def _where() -> tuple[str, str | None]:
    import ray

    ctx = ray.get_runtime_context()
    return ctx.get_node_id(), ctx.get_node_labels().get(DEVICE_LABEL)


def _value(fn: Callable, threads: int, *args) -> Any:
    """The body of every task: `fn(*args)` with torch limited to the task's CPUs. The arguments are top-level task
    arguments, so Ray resolves the object references among them. Alone, a task whose result feeds other tasks."""
    import torch

    torch.set_num_threads(threads)
    return fn(*args)


def _run(fn: Callable, threads: int, *args) -> tuple[Any, str, str | None]:
    """A task whose outcome is reported: its value, plus where it ran."""
    return _value(fn, threads, *args), *_where()


class RaySweep:
    """A connection to a Ray cluster (`address`), or a local Ray started for this run (`address` None or "local").

    `device`: run every task on nodes whose `device` label is this kind (None: any node with free CPUs).
    `cpus`: CPUs per task (torch runs with as many threads). `retries`: Ray retries of a failed task."""

    def __init__(self, address: str | None = None, device: str | None = None, cpus: int = 1, retries: int = 1):
        try:
            import ray
        except ImportError:
            raise ClusterError("ray is not installed (pip install 'svdq-edge[cluster]')") from None
        self.device, self.cpus, self.retries = device, cpus, retries
        self._started = not ray.is_initialized()
        if self._started:
            try:
                ray.init(address=None if address in (None, "local") else address, include_dashboard=False,
                         logging_level=logging.WARNING, log_to_driver=False,
                         runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}})
            except (ConnectionError, ValueError, RuntimeError) as e:
                raise ClusterError(f"cannot reach the Ray cluster at {address}: {first_line(e)}") from None
        if device is not None and device not in self.devices():
            raise ClusterError(f"no alive Ray node has the label {DEVICE_LABEL}={device} "
                               f"(have: {', '.join(self.devices()) or 'none'})")
        self._task, self._value = ray.remote(_run), ray.remote(_value)

    @staticmethod
    def devices() -> list[str]:
        """The distinct `device` labels of the alive nodes that have CPUs."""
        import ray

        kinds = {n.get("Labels", {}).get(DEVICE_LABEL) for n in ray.nodes()
                 if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0}
        return sorted(k for k in kinds if k)

    @staticmethod
    def cpus_of(device: str) -> int:
        """The most CPUs one alive node of this kind has (a task asking for more would never be placed)."""
        import ray

        return int(max((n["Resources"].get("CPU", 0) for n in ray.nodes()
                        if n.get("Alive") and n.get("Labels", {}).get(DEVICE_LABEL) == device), default=0))

    @staticmethod
    def put(value: Any):
        """Place `value` in the object store once; pass the reference as a task argument."""
        import ray

        return ray.put(value)

    def _options(self, device: str | None, cpus: int) -> dict[str, Any]:
        options: dict[str, Any] = {"num_cpus": cpus, "max_retries": self.retries, "retry_exceptions": True}
        if device is not None:
            options["label_selector"] = {DEVICE_LABEL: device}
        return options

    def submit(self, fn: Callable, *args):
        """Start `fn(*args)` as a task on this sweep's device and return its object reference at once: an
        intermediate result (calibration statistics) that other tasks take as an argument, so Ray runs them after
        it, and computes it once for all of them."""
        return self._value.options(**self._options(self.device, self.cpus)).remote(fn, self.cpus, *args)

    def map(self, fn: Callable, tasks: dict[str, tuple], device: str | None = None, cpus: int | None = None,
            progress: bool = True) -> dict[str, Outcome]:
        """Run `fn(*args)` for every `label: args` as one Ray task each, with `cpus` CPUs (default: the sweep's), on
        `device`-labelled nodes (default: the sweep's device); outcomes in the order of `tasks`."""
        import ray
        from tqdm.auto import tqdm

        device, cpus = device or self.device, cpus or self.cpus
        options = self._options(device, cpus)
        refs = {self._task.options(**options).remote(fn, cpus, *args): label for label, args in tasks.items()}
        done: dict[str, Outcome] = {}
        pending = list(refs)
        with tqdm(total=len(refs), desc=f"ray tasks{' on ' + device if device else ''}", disable=not progress,
                  leave=False) as bar:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                label = refs[ready[0]]
                try:
                    value, node, kind = ray.get(ready[0])
                    done[label] = Outcome(label, value, node=node, device=kind)
                except Exception as e:  # the task failed on its retry too: reported, never dropped
                    done[label] = Outcome(label, error=_task_error(e))
                    log.warning("task %s failed after %d attempts: %s", label, self.retries + 1, done[label].error)
                bar.update()
        return {label: done[label] for label in tasks}

    def close(self) -> None:
        """Shut down the local Ray this sweep started (a cluster it joined keeps running)."""
        import ray

        if self._started:
            ray.shutdown()

    def __enter__(self) -> RaySweep:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _task_error(e: Exception) -> str:
    """One line: the task's own exception where Ray wraps one, else Ray's (a worker that died)."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {first_line(cause)}"
    return f"{type(e).__name__}: {first_line(e)}"

