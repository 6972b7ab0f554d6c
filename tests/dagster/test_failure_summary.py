"""A run that cannot reach its organization fails with one sentence naming the cause and the fix
(what the Dagster UI shows as the failure), not a stack trace."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml

from azdo_pipeline.partitions import ORG_PARTITIONS_NAME
from azdo_pipeline.resources import AzdoPipeline

pytestmark = pytest.mark.timeout(180)
ORG = "unreachable"


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A loopback port that refuses connections (bound, never listening)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def test_unreachable_host_fails_with_cause_and_fix(tmp_path: Path, dead_port: int,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZDO_UNREACHABLE_PAT", "not-a-real-token-but-set")
    cfg = tmp_path / "azdo-pipeline.yaml"
    cfg.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "organizations": [
        {"name": ORG, "url": f"https://127.0.0.1:{dead_port}/{ORG}",
         "auth": {"method": "pat", "pat_env": "AZDO_UNREACHABLE_PAT"}}]}))
    raw = dg.load_assets_from_modules([__import__("assets.raw").raw])
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(ORG_PARTITIONS_NAME, [ORG])
        result = dg.materialize(raw, partition_key=ORG, instance=instance, raise_on_error=False,
                                resources={"azdo": AzdoPipeline(config_path=str(cfg))})
    assert not result.success
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures
    data = failures[0].step_failure_data
    assert data.error is not None and data.error.cls_name == "Failure"  # not an unexpected exception
    assert data.user_failure_data is not None
    summary = data.user_failure_data.description or ""
    assert summary.startswith(f"Cannot reach organization {ORG} at https://127.0.0.1:{dead_port}/{ORG} (")
    assert "(connection refused)" in summary
    assert f"check its `url` in {cfg}" in summary and "HTTPS_PROXY / NO_PROXY" in summary
    assert summary.count(". ") == 0 and "Traceback" not in summary  # one sentence
