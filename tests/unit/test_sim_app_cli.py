"""The `azdo-pipeline` console script with the simulator's commands (entry point): argument parsing,
`simulate` errors and the simulator tour."""

from __future__ import annotations

import argparse
import socket

import pytest
from azdo_sim import cli as sim_cli

from azdo_pipeline import cli


def test_parse_latency() -> None:
    assert sim_cli.parse_latency("50") == (50, 50)
    assert sim_cli.parse_latency("20-80") == (20, 80)
    for bad in ("x", "80-20", "-5", "1-2-3"):
        with pytest.raises(argparse.ArgumentTypeError):
            sim_cli.parse_latency(bad)


def test_parser_defaults_and_subcommands() -> None:
    args = cli.build_parser().parse_args(["simulate"])
    assert (args.size, args.seed, args.port, args.org, args.throttle, args.latency_ms) == (
        "small", 0, 8765, "sim-fabrikam", False, None)
    args = cli.build_parser().parse_args(["simulate", "--size", "xl", "--throttle", "--latency-ms", "1-3"])
    assert args.size == "xl" and args.throttle and args.latency_ms == (1, 3)
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["simulate", "--size", "huge"])
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args([])
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert {"simulate", "demo", "tour", "dev", "login"} <= set(sub.choices)


def test_configure_faults() -> None:
    from azdo_sim.state import World

    world = World()
    sim_cli.configure_faults(world, throttle=True, latency_ms=(5, 9))
    cfg = world.faults.to_json()
    assert cfg["latency_ms"] == [5.0, 9.0]
    assert cfg["throttle"]["budget"] == 200 and cfg["throttle"]["window_seconds"] == 300


def test_simulate_reports_a_busy_port(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert cli.main(["simulate", "--size", "tiny", "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_tour_serves_real_routes(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["tour", "--size", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "area Graph" in out and "/vssps/sim-fabrikam/" in out
    assert "GET graph/users  → 200" in out
    assert "GET projects     → 200" in out
