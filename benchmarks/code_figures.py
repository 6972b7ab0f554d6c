"""Code-shape figures: lines per package and the longest functions (for closing notes and reviews).

    python benchmarks/code_figures.py            # lines per package, the 10 longest functions
    python benchmarks/code_figures.py --top 25
    python benchmarks/code_figures.py --all      # longest functions of tests and benchmarks too
    python benchmarks/code_figures.py --root DIR # another checkout, e.g. `git archive` of an older commit

A function's lines run from its `def` to its last line (decorators excluded), nested functions
counted inside their parent and on their own, as `ast` reports them.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "azdo_pipeline (top level)": ("azdo_pipeline", False),
    "azdo_pipeline/client": ("azdo_pipeline/client", True),
    "azdo_pipeline/sync": ("azdo_pipeline/sync", True),
    "azdo_pipeline/accessgraph": ("azdo_pipeline/accessgraph", True),
    "azdo_pipeline/provisioning": ("azdo_pipeline/provisioning", True),
    "assets": ("assets", True),
    "simulator/azdo_sim": ("simulator/azdo_sim", True),
    "azdo_pipeline/simulator (before it moved out)": ("azdo_pipeline/simulator", True),
    "tests": ("tests", True),
    "benchmarks": ("benchmarks", True),
}


def _files(root: Path, folder: str, recursive: bool) -> list[Path]:
    base = root / folder
    return sorted(base.rglob("*.py") if recursive else base.glob("*.py"))


def _lines(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip())


def longest_functions(root: Path, top: int, folders: tuple[str, ...]) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for folder in folders:
        for path in (root / folder).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    n = (node.end_lineno or node.lineno) - node.lineno + 1
                    out.append((n, f"{path.relative_to(root)}::{node.name}"))
    return sorted(out, reverse=True)[:top]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--all", action="store_true", help="longest functions of tests and benchmarks too")
    ap.add_argument("--root", type=Path, default=ROOT, help="the checkout to measure (default: this one)")
    args = ap.parse_args()
    root = args.root.resolve()
    print(f"non-blank lines per package ({root}):")
    total = 0
    for label, (folder, recursive) in PACKAGES.items():
        if not (root / folder).is_dir():
            continue
        n = sum(_lines(p) for p in _files(root, folder, recursive))
        total += n
        print(f"  {n:>7,}  {label}")
    print(f"  {total:>7,}  total")
    folders = ("azdo_pipeline", "assets", "simulator/azdo_sim")
    if args.all:
        folders += ("tests", "benchmarks")
    print(f"\nthe {args.top} longest functions (lines, {', '.join(folders)}):")
    for n, name in longest_functions(root, args.top, folders):
        print(f"  {n:>5}  {name}")


if __name__ == "__main__":
    main()
