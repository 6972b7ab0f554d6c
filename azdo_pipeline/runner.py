"""Running the full-sync job in this process, through Dagster (`azdo-pipeline sync`, the demo).

The job and its assets live in the code location `assets/` of the repository (workspace.yaml), not
in this library, so they are loaded from there as `dagster dev` loads them. The run goes to the
Dagster instance of `$DAGSTER_HOME` when it is set (it then shows in that instance's UI), else to
an ephemeral one; the organization's partition is registered first, as the sensor would.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from .config import ENV_CONFIG
from .partitions import ORG_PARTITIONS_NAME
from .resources import AzdoPipeline

JOB_NAME = "full_sync_job"


class LocationNotFound(Exception):
    """The Dagster code location (assets/ beside workspace.yaml) is not in this folder or above."""


def repo_root(start: Path | None = None) -> Path:
    """The repository holding the Dagster code location (assets/ beside workspace.yaml)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "workspace.yaml").is_file() and (folder / "assets" / "definitions.py").is_file():
            return folder
    raise LocationNotFound("run it from the azdo-pipeline repository (the folder with workspace.yaml and "
                           "assets/), where the Dagster code location lives")


def load_definitions(root: Path, config_path: str | Path) -> dg.Definitions:
    """The code location's Definitions, loaded from the repository with `config_path` as its
    configuration (it validates the file when it loads)."""
    with _environ(ENV_CONFIG, str(config_path)):
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        module = importlib.import_module("assets.definitions")
    defs = module.defs
    assert isinstance(defs, dg.Definitions)
    return defs


@dataclass(frozen=True)
class JobRun:
    result: dg.ExecuteInProcessResult
    seconds: float


def run_full_sync(defs: dg.Definitions, org: str, *, config_path: str | Path, data_dir: str | Path | None = None,
                  tags: Mapping[str, str] | None = None, log_level: str = "WARNING",
                  instance: dg.DagsterInstance | None = None) -> JobRun:
    """One run of the full-sync job (sync + access graph) for `org`, in this process, on `instance`
    (default: $DAGSTER_HOME's, else an ephemeral one)."""
    job = defs.resolve_job_def(JOB_NAME)
    resource = AzdoPipeline(config_path=str(config_path), data_dir=str(data_dir) if data_dir else None)
    with _given_or_default(instance) as instance:
        if not instance.has_dynamic_partition(ORG_PARTITIONS_NAME, org):
            instance.add_dynamic_partitions(ORG_PARTITIONS_NAME, [org])
        started = time.monotonic()
        result = job.execute_in_process(
            partition_key=org, instance=instance, resources={"azdo": resource}, raise_on_error=False,
            tags={"azdo/org": org, **(tags or {})},
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}})
        return JobRun(result, time.monotonic() - started)


def failure_causes(result: dg.ExecuteInProcessResult) -> list[str]:
    """What failed, in the words of the step (a dg.Failure's description, else the error's message)."""
    causes = []
    for event in result.all_events:
        if not event.is_step_failure:
            continue
        data = event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            text = data.user_failure_data.description
        elif data.error is not None:
            text = data.error.message.strip()
        else:
            text = "failed"
        causes.append(f"{event.step_key}: {text}")
    return causes


@contextmanager
def _given_or_default(instance: dg.DagsterInstance | None) -> Iterator[dg.DagsterInstance]:
    if instance is not None:
        yield instance
    elif os.environ.get("DAGSTER_HOME"):
        with dg.DagsterInstance.get() as instance:
            yield instance
    else:
        with dg.DagsterInstance.ephemeral() as instance:
            yield instance


@contextmanager
def _environ(name: str, value: str) -> Iterator[None]:
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous
