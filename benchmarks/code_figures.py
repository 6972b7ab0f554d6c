"""Code-shape figures: lines per package and the longest functions (for closing notes and reviews).

    python benchmarks/code_figures.py            # lines per package, the 10 longest functions
    python benchmarks/code_figures.py --top 25
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
    "tests": ("tests", True),
    "benchmarks": ("benchmarks", True),
}


def _files(folder: str, recursive: bool) -> list[Path]:
    base = ROOT / folder
    return sorted(base.rglob("*.py") if recursive else base.glob("*.py"))


def _lines(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip())


def longest_functions(top: int) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for folder in ("azdo_pipeline", "assets", "simulator/azdo_sim"):
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    n = (node.end_lineno or node.lineno) - node.lineno + 1
                    out.append((n, f"{path.relative_to(ROOT)}::{node.name}"))
    return sorted(out, reverse=True)[:top]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--top", type=int, default=10)
    args = ap.parse_args()
    print("non-blank lines per package:")
    for label, (folder, recursive) in PACKAGES.items():
        print(f"  {sum(_lines(p) for p in _files(folder, recursive)):>7,}  {label}")
    print(f"\nthe {args.top} longest functions (lines, product and simulator):")
    for n, name in longest_functions(args.top):
        print(f"  {n:>5}  {name}")


if __name__ == "__main__":
    main()
