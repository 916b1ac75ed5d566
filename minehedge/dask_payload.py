"""The Dask side of a sweep's payload (the run function and the shared data): imported only by Dask sweeps,
since it needs ``distributed``.

The payload travels as a worker plugin rather than as scattered data. The scheduler keeps a plugin and hands
it to every worker that joins later, a worker its nanny restarted after it died included, whereas scattered
data live only on the workers: when the workers holding them have all died (a configuration that kills its
worker kills each worker it is tried on), every task still to run lost its input and was cancelled. Each
worker still receives the payload once, for all its tasks.
"""

from __future__ import annotations

from typing import Any

from distributed import WorkerPlugin, get_worker


class PayloadPlugin(WorkerPlugin):
    """Holds ``payload`` on each worker, under the name it is registered with."""

    def __init__(self, payload: Any) -> None:
        self.payload = payload

    def teardown(self, worker: Any) -> None:
        self.payload = None  # unregistered at the end of the sweep: the data go with it


def worker_payload(name: str) -> Any:
    """In a task: the payload of the plugin registered as ``name`` on this worker."""
    return get_worker().plugins[name].payload
