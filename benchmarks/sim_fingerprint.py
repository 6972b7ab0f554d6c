"""Fingerprints of the simulator's seeded output: generated organizations and random mutation scripts.

A refactoring of the generator or of mutations.py must leave them byte-identical. Run it at the
commit before and after and compare the lines:

    .venv/bin/python benchmarks/sim_fingerprint.py                        # small seeds 0-3, medium 1
    .venv/bin/python benchmarks/sim_fingerprint.py --sizes small,large --seeds 7
    git archive <commit> simulator | tar -x -C /tmp/before
    PYTHONPATH=/tmp/before/simulator .venv/bin/python benchmarks/sim_fingerprint.py   # that commit's azdo_sim

Per organization: a hash of the whole world after generation (every organization field: identities,
scan orders, memberships, entitlements, projects, teams, audit log; the Entra directory and the
world's random state), of a random op script drawn from it, of the results of applying that script
(timed ops spread over a day, so Entra propagation plays a part), and of the world afterwards.
The clock is fixed, so the figures do not depend on the day they are taken.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import random
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import azdo_sim
from azdo_sim.generator import generate
from azdo_sim.mutations import apply_ops, random_ops
from azdo_sim.state import Clock, OrgState, World

START = datetime(2026, 6, 1, 9, 30, tzinfo=UTC)


class _FixedClock(Clock):
    def __init__(self, at: datetime) -> None:
        super().__init__()
        self._at = at

    def now(self) -> datetime:
        return self._at

    def advance(self, delta: timedelta) -> None:
        self._at += delta


def canonical(x: Any) -> Any:
    """JSON-ready, order kept where the state keeps one (dicts, lists), sorted where it has none (sets)."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: canonical(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, set | frozenset):
        return sorted(json.dumps(canonical(v), sort_keys=True) for v in x)
    if isinstance(x, Counter):
        return sorted(x.items())
    if isinstance(x, dict):
        return [[canonical(k), canonical(v)] for k, v in x.items()]
    if isinstance(x, list | tuple):
        return [canonical(v) for v in x]
    if isinstance(x, datetime):
        return x.isoformat()
    if isinstance(x, timedelta):
        return x.total_seconds()
    if x is None or isinstance(x, str | int | float | bool):
        return x
    raise TypeError(f"no canonical form for {type(x).__name__}")


def _org(org: OrgState) -> Any:
    return canonical({k: v for k, v in vars(org).items() if k != "world"})


def _world(world: World) -> Any:
    # Left out: the lock, the clock, and what the HTTP side owns (apps, tokens, faults).
    skip = {"lock", "clock", "orgs", "entra_apps", "token_store", "faults", "rng"}
    state = {k: v for k, v in vars(world).items() if k not in skip}
    state["rng"] = world.rng.getstate()
    state["orgs"] = {name: _org(org) for name, org in world.orgs.items()}
    return canonical(state)


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj).encode()).hexdigest()[:16]


def fingerprint(size: str, seed: int, n_ops: int) -> str:
    world = World(seed=seed)
    world.clock = _FixedClock(START)
    org = generate(world, "sim-fabrikam", size=size, seed=seed)
    generated = digest(_world(world))
    rng = random.Random(seed * 1000 + 17)
    ops = random_ops(org, rng, n_ops)
    for i, op in enumerate(ops):
        if i % 25 == 0:
            op["at"] = START + timedelta(minutes=7 * i)
    results = apply_ops(org, ops, rng)
    edges = sum(len(members) for members in org.down.values())
    return (f"{size:6} seed {seed}: generated {generated}  ops {digest(canonical(ops))} ({len(ops)})  "
            f"results {digest(canonical(results))}  after {digest(_world(world))}  edges {edges:,}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="small,medium")
    ap.add_argument("--seeds", default=None, help="comma-separated (default: small 0-3, other sizes 1)")
    ap.add_argument("--ops", type=int, default=400, help="random ops per organization")
    args = ap.parse_args()
    print(f"azdo_sim: {azdo_sim.__file__}", file=sys.stderr)
    for size in args.sizes.split(","):
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else ([0, 1, 2, 3] if size == "small" else [1])
        for seed in seeds:
            print(fingerprint(size, seed, args.ops), flush=True)


if __name__ == "__main__":
    main()
