"""`dagster definitions validate` (what CI and the UI run when loading the code location) reports a
configuration error, naming the setting and the fix, before any run, and never shows a pasted secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LEGACY_PAT = "k3mq7vzp2xw5ty4rbn6cj2hd7fs3lg5qa4wnoe6ui2zx7rk3vt5m"  # PAT-shaped, not a real token
GOOD = "organizations:\n  - name: fabrikam\n    auth: {method: pat, pat_env: AZDO_PAT}\n"


def _validate(tmp_path: Path, config_text: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "azdo-pipeline.yaml"
    config.write_text(config_text)
    env = {**os.environ, "AZDO_PIPELINE_CONFIG": str(config), "DAGSTER_HOME": str(tmp_path)}
    dagster = Path(sys.executable).with_name("dagster")
    # workspace.yaml's working directory is ".", so the command runs from the repository (it writes
    # nothing there: the instance lives in DAGSTER_HOME).
    return subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=180)


@pytest.mark.parametrize(("text", "expected"), [
    (GOOD, "All code locations passed validation"),
    ("organizations: [unclosed\n", "not valid YAML: line 2, column 1"),
    (GOOD.replace("AZDO_PAT", LEGACY_PAT),
     "organizations[0].auth.pat_env: looks like an Azure DevOps personal access token"),
], ids=["good", "yaml-syntax-error", "pasted-pat"])
def test_definitions_validate_reports_configuration_errors(tmp_path: Path, text: str, expected: str) -> None:
    proc = _validate(tmp_path, text)
    output = proc.stdout + proc.stderr
    assert expected in output
    assert (proc.returncode == 0) == (text == GOOD), output
    assert LEGACY_PAT not in output
