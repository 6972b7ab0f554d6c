"""A production install (no azdo-sim) asked for a simulator command says what to install, not argparse's
"invalid choice"."""

from __future__ import annotations

from typing import Any

import pytest

from azdo_pipeline import cli


@pytest.mark.parametrize("command", cli.SIMULATOR_COMMANDS)
def test_a_simulator_command_without_the_simulator(command: str, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    real = cli.entry_points

    def without_simulator(**kw: Any) -> Any:
        return [] if kw.get("group") == "azdo_pipeline.commands" else real(**kw)

    monkeypatch.setattr(cli, "entry_points", without_simulator)
    assert cli.main([command]) == 2
    err = capsys.readouterr().err
    assert f"azdo-pipeline {command}:" in err and "make install" in err and "invalid choice" not in err


def test_with_the_simulator_installed_the_commands_are_there(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["dev", "--help"])
    assert done.value.code == 0 and "simulator" in capsys.readouterr().out
