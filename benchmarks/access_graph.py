"""Access-graph build vs DuckDB's recursive CTE on the same Parquet: time and peak RSS, side by side.

    .venv/bin/python benchmarks/access_graph.py --size large
    .venv/bin/python benchmarks/access_graph.py --size xl

1. Generates the organization with the simulator's generator (`generate` + `truth.ground_truth`),
   or with a synthetic generator of the same shape (`--source synthetic`), and writes the raw tables
   to Parquet (cached per size and seed in --workdir).
2. Runs each contender in a fresh subprocess (so peak RSS is its own; ru_maxrss of the child):
   - ours-closure: the shortest-path closure principal → group (with paths) over all principals;
   - duckdb-closure: the same closure as a recursive CTE (USING KEY, breadth-first, cycle-safe);
   - ours-full: every access-graph table built and streamed to Parquet (write_access_graph);
   - ours-in-memory: every table built and held in memory (build_access_graph).
3. Prints the figures and the ratios (DuckDB time / ours: above 1 means we are faster).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from azdo_pipeline.schemas import RAW_TABLES  # noqa: E402

ORG = "fabrikam"


# ---- raw data ---------------------------------------------------------------------------
def simulated_raw(size: str, seed: int) -> dict[str, pa.Table]:
    from azdo_sim.generator import generate
    from azdo_sim.state import World
    from azdo_sim.truth import ground_truth

    world = World(seed=seed)
    org = generate(world, ORG, size=size, seed=seed)
    with world.lock:
        truth = ground_truth(org)
    out = {name: pa.Table.from_pylist(rows, schema=RAW_TABLES[name]) for name, rows in truth.items()
           if name in RAW_TABLES}
    out["organizations"] = pa.Table.from_pylist(
        [{"id": org.id, "name": ORG, "url": f"https://dev.azure.com/{ORG}", "status": "enabled"}],
        schema=RAW_TABLES["organizations"])
    return out


SYNTHETIC = {"large": (20_000, 500), "xl": (100_000, 3_000), "medium": (2_000, 60), "small": (200, 10)}


def synthetic_raw(size: str, seed: int) -> dict[str, pa.Table]:
    """Same shape as the simulator: built-in groups per project, teams in Contributors, Entra groups
    (nested, some inside project groups), ~10 direct memberships per user."""
    n_users, n_projects = SYNTHETIC[size]
    rng = random.Random(seed)
    roles = ["Project Administrators", "Contributors", "Readers", "Build Administrators", "Project Valid Users"]
    groups, edges, projects, teams = [], [], [], []
    pcvu = "vssgp.pcvu"
    groups.append({"descriptor": pcvu, "kind": "vssgp", "display_name": "Project Collection Valid Users",
                   "scope": "organization", "is_team": False})
    entra = [f"aadgp.e{i}" for i in range(max(n_projects // 8, 2))]
    for i, e in enumerate(entra):
        groups.append({"descriptor": e, "kind": "aadgp", "display_name": f"Entra {i}", "scope": "organization",
                       "is_team": False})
        if i and rng.random() < 0.3:
            edges.append((entra[rng.randrange(i)], e, "group"))
    project_groups: list[list[str]] = []
    for p in range(n_projects):
        pid = f"p{p:05d}"
        projects.append({"id": pid, "name": f"Project {p}"})
        gs = [f"vssgp.{pid}.{r}" for r in range(5)]
        for d, name in zip(gs, roles, strict=True):
            groups.append({"descriptor": d, "kind": "vssgp", "display_name": name, "scope": "project",
                           "project_id": pid, "is_team": False})
        edges += [(gs[4], d, "group") for d in gs[:4]] + [(pcvu, gs[4], "group")]
        for t in range(1 + int(rng.expovariate(1 / 1.2))):
            tid, td = f"t{p:05d}-{t}", f"vssgp.{pid}.team{t}"
            teams.append({"id": tid, "name": f"Team {t}", "project_id": pid})
            groups.append({"descriptor": td, "kind": "vssgp", "display_name": f"Team {t}", "scope": "project",
                           "project_id": pid, "is_team": True, "storage_key": tid})
            edges.append((gs[1], td, "group"))
            gs.append(td)
        if rng.random() < 0.3:
            edges.append((gs[rng.choice((1, 2))], rng.choice(entra), "group"))
        project_groups.append(gs)
    users = []
    for u in range(n_users):
        d = f"aad.u{u:06d}"
        users.append({"descriptor": d, "subject_type": "aad", "origin": "aad", "display_name": f"User {u}",
                      "meta_type": "guest" if rng.random() < 0.05 else "member", "license": "express",
                      "licensing_source": "account", "status": "active"})
        for p in rng.sample(range(n_projects), min(n_projects, 1 + int(rng.expovariate(1 / 7.5)))):
            gs = project_groups[p]
            edges.append((gs[rng.choice([1, 1, 2, *range(5, len(gs))])], d, "user"))
        if rng.random() < 0.4:
            edges.append((rng.choice(entra), d, "user"))
    seen = set()
    rows = []
    for c, m, k in edges:
        if (c, m) not in seen:
            seen.add((c, m))
            rows.append({"container_descriptor": c, "member_descriptor": m, "member_kind": k})

    def t(name: str, data: list[dict]) -> pa.Table:
        return pa.Table.from_pylist(data, schema=RAW_TABLES[name])

    return {"users": t("users", users), "groups": t("groups", groups), "memberships": t("memberships", rows),
            "projects": t("projects", projects), "teams": t("teams", teams),
            "organizations": t("organizations", [{"id": "1", "name": ORG}])}


def prepare(size: str, seed: int, source: str, workdir: Path) -> Path:
    d = workdir / f"{source}-{size}-{seed}"
    if (d / "memberships.parquet").exists():
        return d
    d.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        raw = simulated_raw(size, seed) if source == "simulator" else synthetic_raw(size, seed)
    except ImportError:
        print("simulator generator not available; using the synthetic generator")
        raw = synthetic_raw(size, seed)
    for name, table in raw.items():
        pq.write_table(table, d / f"{name}.parquet", compression="zstd")
    print(f"generated {source} {size} raw tables in {time.perf_counter() - t0:.1f}s -> {d}")
    return d


# ---- contenders (each runs in its own process) ---------------------------------------------
def _read_raw(d: Path) -> dict[str, pa.Table]:
    return {p.stem: pq.read_table(p) for p in d.glob("*.parquet")}


def run_ours_closure(d: Path) -> dict:
    from azdo_pipeline.accessgraph.closure import principal_closure
    from azdo_pipeline.accessgraph.index import GraphIndex

    t0 = time.perf_counter()
    ix = GraphIndex.from_raw(_read_raw(d), ORG)
    gc = ix.group_closure
    rows, depth_sum = len(gc.rows), int(gc.rows.depth.sum())
    m, c = ix.edge_member, ix.edge_container
    import numpy as np

    start = int(np.searchsorted(m, ix.n_groups))
    step = 262_144
    while start < len(m):
        stop = min(start + step, len(m))
        if stop < len(m):
            stop = int(np.searchsorted(m, m[stop - 1], side="right"))
        part = principal_closure(gc, ix.n_groups, m[start:stop], c[start:stop])
        rows += len(part)
        depth_sum += int(part.depth.sum())
        start = stop
    return {"seconds": time.perf_counter() - t0, "rows": rows, "depth_sum": depth_sum}


DUCKDB_CLOSURE = """
CREATE TABLE closure AS
WITH RECURSIVE c(principal, grp, depth, path) USING KEY (principal, grp) AS (
    SELECT member_descriptor, container_descriptor, 1, [container_descriptor]
    FROM edges
  UNION
    SELECT c.principal, e.container_descriptor, c.depth + 1, list_append(c.path, e.container_descriptor)
    FROM c
    JOIN edges e ON e.member_descriptor = c.grp
    LEFT JOIN recurring.c seen ON seen.principal = c.principal AND seen.grp = e.container_descriptor
    WHERE seen.principal IS NULL AND c.principal <> e.container_descriptor
)
SELECT * FROM c
"""


def run_duckdb_closure(d: Path) -> dict:
    import duckdb

    t0 = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"CREATE TEMP VIEW edges AS SELECT DISTINCT container_descriptor, member_descriptor "
                f"FROM read_parquet('{d / 'memberships.parquet'}')")
    con.execute(DUCKDB_CLOSURE)
    rows, depth_sum = con.execute("SELECT count(*), sum(depth) FROM closure").fetchone()
    return {"seconds": time.perf_counter() - t0, "rows": rows, "depth_sum": int(depth_sum or 0)}


def run_ours_full(d: Path, keep: Path | None = None) -> dict:
    from azdo_pipeline.accessgraph.build import write_access_graph

    out = Path(tempfile.mkdtemp(prefix="ag-out-"))

    class Sink:
        def __init__(self, name: str, schema: pa.Schema) -> None:
            self.w = pq.ParquetWriter(out / f"{name}.parquet", schema, compression="zstd")

        def __enter__(self) -> Sink:
            return self

        def __exit__(self, *exc: object) -> None:
            self.w.close()

        def write_table(self, table: pa.Table) -> None:
            self.w.write_table(table)

    t0 = time.perf_counter()
    counts = write_access_graph(_read_raw(d), Sink, organization=ORG)
    secs = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in out.glob("*.parquet"))
    if keep is not None:  # for benchmarks/compare_tables.py
        keep.mkdir(parents=True, exist_ok=True)
    for p in out.glob("*.parquet"):
        if keep is not None:
            shutil.move(p, keep / p.name)
        else:
            p.unlink()
    out.rmdir()
    return {"seconds": secs, "rows": counts, "parquet_mb": round(size / 2**20, 1)}


def run_ours_in_memory(d: Path) -> dict:
    from azdo_pipeline.accessgraph.build import build_access_graph

    t0 = time.perf_counter()
    graph = build_access_graph(_read_raw(d), organization=ORG)
    return {"seconds": time.perf_counter() - t0, "rows": {k: t.num_rows for k, t in graph.items()},
            "arrow_mb": round(sum(t.nbytes for t in graph.values()) / 2**20, 1)}


CONTENDERS = {"ours-closure": run_ours_closure, "duckdb-closure": run_duckdb_closure, "ours-full": run_ours_full,
              "ours-in-memory": run_ours_in_memory}


def child(name: str, d: Path, keep: Path | None) -> None:
    result = run_ours_full(d, keep) if name == "ours-full" else CONTENDERS[name](d)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result))


def measure(name: str, d: Path, keep: str | None = None) -> dict:
    extra = ["--keep-graph", keep] if keep and name == "ours-full" else []
    proc = subprocess.run([sys.executable, __file__, "--child", name, "--dir", str(d), *extra],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="large", choices=["small", "medium", "large", "xl"])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--source", default="simulator", choices=["simulator", "synthetic"])
    ap.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "azdo-access-graph-bench"))
    ap.add_argument("--only", nargs="*", choices=list(CONTENDERS), help="run only these contenders")
    ap.add_argument("--keep-graph", metavar="DIR",
                    help="keep ours-full's Parquet tables in DIR, to compare the graphs of two commits with "
                         "benchmarks/compare_tables.py")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, Path(args.dir), Path(args.keep_graph) if args.keep_graph else None)
        return
    d = prepare(args.size, args.seed, args.source, Path(args.workdir))
    m = pq.ParquetFile(d / "memberships.parquet").metadata.num_rows
    print(f"{args.size} ({args.source}, seed {args.seed}): {m:,} direct memberships")
    results = {}
    for name in args.only or list(CONTENDERS):
        results[name] = r = measure(name, d, args.keep_graph)
        rows = r["rows"] if isinstance(r["rows"], int) else r["rows"].get("effective_grants")
        print(f"  {name:15s} {r['seconds']:8.2f} s   peak RSS {r['peak_rss_mb']:8.1f} MB   rows {rows:,}"
              + (f"   parquet {r['parquet_mb']} MB" if "parquet_mb" in r else "")
              + (f"   arrow {r['arrow_mb']} MB" if "arrow_mb" in r else ""))
    ours, duck = results.get("ours-closure"), results.get("duckdb-closure")
    if ours and duck:
        same = ours["rows"] == duck["rows"] and ours["depth_sum"] == duck["depth_sum"]
        print(f"  closure rows and depth sums agree: {same}")
        print(f"  ratio DuckDB / ours (closure): time {duck['seconds'] / ours['seconds']:.2f}x, "
              f"peak RSS {duck['peak_rss_mb'] / ours['peak_rss_mb']:.2f}x")
    full = results.get("ours-full")
    if full and duck:
        print(f"  ratio DuckDB closure / our full build (all tables to Parquet): time "
              f"{duck['seconds'] / full['seconds']:.2f}x; full-build peak RSS {full['peak_rss_mb']:.0f} MB "
              f"(target < 2048 MB)")
        print(f"  table rows: {json.dumps(full['rows'])}")


if __name__ == "__main__":
    main()
