"""Which batches need a run, and which runs died: the sensor's decisions, free of Dagster.

The sensor asks the run storage about each open batch (`RunView`) and this module decides:
- a batch never launched gets a run (its run key is the batch id, so launching twice is a no-op);
- a batch whose run ended (failed, canceled, or succeeded without finishing every request, or
  whose worker process is gone) gives its unfinished requests to a new batch, which gets a run.
Correctness never depends on the sensor's cursor: the ledger and the run keys carry it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from .ledger import Batch, Ledger


class RunState(Enum):
    NONE = "none"  # no run for this batch yet
    ACTIVE = "active"  # queued, starting or running
    ENDED = "ended"  # success, failure or canceled


@dataclass(frozen=True)
class RunView:
    state: RunState
    run_id: str | None = None


@dataclass
class Dispatch:
    launch: list[Batch] = field(default_factory=list)  # batches to request a run for
    requeued: list[tuple[str, str]] = field(default_factory=list)  # (old batch, new batch)
    dead_runs: list[str] = field(default_factory=list)  # run ids whose worker is gone: report them failed
    waiting: int = 0  # batches whose run is active


def worker_alive(pid: int | None, host: str | None) -> bool:
    """False only when the worker ran on this host and its process is gone (a run on another
    host is left to Dagster's run monitoring)."""
    if pid is None or host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dispatch(ledger: Ledger, run_of: Callable[[Batch], RunView], *,
             alive: Callable[[int | None, str | None], bool] = worker_alive) -> Dispatch:
    out = Dispatch()
    for batch in ledger.open_batches():
        view = run_of(batch)
        if view.state is RunState.NONE:
            out.launch.append(batch)
            continue
        if view.state is RunState.ACTIVE:
            claimed_by_it = batch.run_id is not None and batch.run_id == view.run_id
            if not (claimed_by_it and not alive(batch.worker_pid, batch.worker_host)):
                out.waiting += 1
                continue
            out.dead_runs.append(view.run_id or "")
        new = ledger.requeue(batch.batch_id)
        if new is not None:
            out.requeued.append((batch.batch_id, new.batch_id))
            out.launch.append(new)
    return out
