#!/usr/bin/env python3
"""Checks that src/ has no upward import: every `crate::X` a top-level module uses must be
listed before it in the layout list of src/lib.rs's doc comment (bottom-up). Prints the graph; exit 1 on a
violation. Run: python3 scripts/layers.py"""
import pathlib, re, sys

src = pathlib.Path(__file__).resolve().parent.parent / "src"
order = re.findall(r"^//! - \[`(\w+)`\]", (src / "lib.rs").read_text(), re.M)
rank = {m: i for i, m in enumerate(order)}
uses = {m: set() for m in order}
for path in src.rglob("*.rs"):
    rel = path.relative_to(src)
    top = rel.parts[0].removesuffix(".rs")
    if top not in rank:
        continue
    text = re.sub(r"//[^\n]*", "", path.read_text())
    for dep in re.findall(r"\bcrate::(\w+)", text):
        if dep in rank and dep != top:
            uses[top].add(dep)
bad = []
for m in order:
    deps = sorted(uses[m], key=rank.get)
    print(f"{m:14} -> {', '.join(deps) or '-'}")
    bad += [(m, d) for d in deps if rank[d] > rank[m]]
for m, d in bad:
    print(f"upward import: {m} uses {d}, which src/lib.rs lists after it", file=sys.stderr)
sys.exit(1 if bad else 0)
