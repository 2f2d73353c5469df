"""Worker processes of the local Dask cluster die with the process that started them, even when it is SIGKILLed.

Dask already ends a worker process whose parent is gone: a thread of each worker blocks on a pipe from the parent and
calls ``os._exit`` when it closes (``distributed.process.AsyncProcess._immediate_exit_when_closed``). That thread needs
the GIL, so a task inside a long C call that holds it (pyamg's kernels do) delays the exit until the call returns.
:class:`DieWithClient` adds the kernel's own rule on Linux (``prctl(PR_SET_PDEATHSIG, SIGKILL)``, as for the second
process of ``compare``), which needs nothing from the worker. Measured (tests/test_kill.py, docs/errors.md): with
Dask's pipe disabled the workers of a SIGKILLed ``vertaug cohort`` lived on for over 30 s; with this plugin alone they
were gone within 5 s.
"""

from __future__ import annotations

from distributed.diagnostics.plugin import WorkerPlugin


class DieWithClient(WorkerPlugin):
    """A worker plugin: set ``PR_SET_PDEATHSIG`` in each worker process (restarted ones too) of a local cluster whose
    worker processes are children of ``client_pid`` (Dask's nannies run in the client process there)."""

    name = "vertaug-die-with-client"

    def __init__(self, client_pid: int):
        self.client_pid = int(client_pid)

    def setup(self, worker) -> None:
        from ..study import _die_with_parent

        _die_with_parent(self.client_pid)
