"""Draw warpaint's module graph from its imports: ``docs/images/architecture.png`` and the
layer table in ``docs/architecture.md`` (between its ``<!-- layers -->`` markers).

Every ``import`` of a warpaint module (at the top or inside a function) is an edge. A
module's layer is one more than the deepest layer it imports, so arrows only point left:
data flows from the command line (right) down to images and errors (left).

    python benchmarks/import_graph.py
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "warpaint"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts) or "warpaint"


def imports(path: Path, name: str) -> set[str]:
    """The warpaint modules ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    package = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            elif node.module and node.module.startswith("warpaint"):
                target = node.module.removeprefix("warpaint").lstrip(".")
            else:
                continue
            for alias in node.names:     # "from . import canvas" imports a module
                sub = f"{target}.{alias.name}" if target else alias.name
                found.add(sub if (PACKAGE / sub.replace(".", "/")).with_suffix(".py").exists() else target)
    return {f for f in found if f and f != name}


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py") if p.name not in ("__main__.py",)}
    edges = {n: {m for m in imports(p, n) if m in files} for n, p in files.items()}
    edges = {n: e - {n} for n, e in edges.items() if n != "warpaint"}   # the top-level re-exports
    used = set().union(*edges.values())
    return {n: e for n, e in edges.items() if e or n in used}           # no isolated packages


def layers(edges: dict[str, set[str]]) -> dict[str, int]:
    depth: dict[str, int] = {}

    def visit(n: str, seen: tuple[str, ...] = ()) -> int:
        if n in depth:
            return depth[n]
        if n in seen:            # an import cycle: report, keep going
            print("cycle:", " -> ".join((*seen, n)))
            return 0
        below = [visit(m, (*seen, n)) for m in edges.get(n, ()) if m in edges]
        depth[n] = 1 + max(below, default=-1)
        return depth[n]

    for n in edges:
        visit(n)
    return depth


def draw(edges: dict[str, set[str]], depth: dict[str, int], dest: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols: dict[int, list[str]] = {}
    for n in sorted(edges, key=lambda n: (depth[n], n)):
        cols.setdefault(depth[n], []).append(n)
    pos = {n: (d * 2.2, -i) for d, names in cols.items() for i, n in enumerate(names)}
    fig, ax = plt.subplots(figsize=(2.2 * len(cols) + 1, 0.6 * max(map(len, cols.values())) + 1.2))
    colors = plt.get_cmap("tab10")
    for n, targets in edges.items():
        for m in targets:
            (x0, y0), (x1, y1) = pos[n], pos[m]
            ax.annotate("", xy=(x1 + 0.75, y1), xytext=(x0 - 0.75, y0),
                        arrowprops={"arrowstyle": "-|>", "color": colors(depth[n] % 10), "lw": 0.5,
                                    "alpha": 0.55, "shrinkA": 0, "shrinkB": 0, "mutation_scale": 6})
    for n, (x, y) in pos.items():
        ax.text(x, y, n, ha="center", va="center", fontsize=8, zorder=3,
                bbox={"boxstyle": "round,pad=0.3", "fc": "#f3efe6", "ec": colors(depth[n] % 10), "lw": 1.0})
    for d in cols:
        ax.text(d * 2.2, 1, f"layer {d}", ha="center", fontsize=9, weight="bold")
    ax.set_xlim(-1.2, 2.2 * max(cols) + 1.2)
    ax.set_ylim(-max(map(len, cols.values())) - 0.2, 1.6)
    ax.axis("off")
    ax.set_title("warpaint's modules: each imports only from layers to its left (generated from the imports)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(dest, dpi=110)
    plt.close(fig)
    from PIL import Image

    with Image.open(dest) as im:     # a diagram needs few colours: about 90 kB instead of 400
        small = im.convert("RGB").quantize(colors=32, method=Image.Quantize.MEDIANCUT)
    small.save(dest, optimize=True)


def table(edges: dict[str, set[str]], depth: dict[str, int]) -> str:
    rows = ["| layer | module | imports |", "|---|---|---|"]
    for n in sorted(edges, key=lambda n: (depth[n], n)):
        rows.append(f"| {depth[n]} | `{n}` | {', '.join(sorted(edges[n])) or '-'} |")
    return "\n".join(rows)


def main() -> None:
    edges = graph()
    depth = layers(edges)
    draw(edges, depth, ROOT / "docs" / "images" / "architecture.png")
    doc = ROOT / "docs" / "architecture.md"
    text = doc.read_text()
    start, end = "<!-- layers -->", "<!-- /layers -->"
    a, b = text.index(start) + len(start), text.index(end)
    doc.write_text(text[:a] + "\n" + table(edges, depth) + "\n" + text[b:])
    print(table(edges, depth))


if __name__ == "__main__":
    main()
