"""frx imports one way: each module imports only from its own floor or the ones below, and no
module imports itself back through others (imports inside functions count too)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "frx"

# lowest first; a module belongs to the first floor with a prefix of its name
FLOORS = [
    ("files", ["frx.files", "frx.naming", "frx.optim", "frx.registry"]),
    ("fr", ["frx.fr", "frx"]),  # `frx` itself re-exports the method only
    ("models and data", ["frx.models", "frx.data", "frx.prune", "frx.record", "frx.checkpoint", "frx.csvlog",
                         "frx.figures"]),
    ("tasks", ["frx.tasks"]),
    ("config", ["frx.config", "frx.distributed", "frx.checks", "frx.cli", "frx.rundir"]),
    ("training", ["frx.method", "frx.loop", "frx.finish", "frx.train"]),
    ("commands and report", ["frx.evaluate", "frx.convert", "frx.fid_checks", "frx.report"]),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor(name: str) -> int:
    for i, (_, prefixes) in enumerate(FLOORS):
        if any(name == p or name.startswith(p + ".") for p in prefixes if p != "frx"):
            return i
    assert name == "frx", f"{name} is on no floor: add it to FLOORS"
    return 1


def imports(path: Path, name: str) -> set[str]:
    """The frx modules that `path` imports (for `from x import y`, x.y when it is a module, else x)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "frx"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            if base.split(".")[0] != "frx":
                continue
            for a in node.names:
                out.add(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base)
    return out - {name}


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def graph() -> dict[str, set[str]]:
    return {name: imports(path, name) for name, path in MODULES.items()}


def test_every_import_points_down_or_sideways():
    up = [f"{a} ({FLOORS[floor(a)][0]}) imports {b} ({FLOORS[floor(b)][0]})"
          for a, deps in graph().items() for b in sorted(deps) if floor(b) > floor(a)]
    assert not up, "\n".join(up)


def test_no_import_circle():
    g = graph()
    # a package's __init__ may import its own modules (they register themselves there)
    g = {a: {b for b in deps if not b.startswith(a + ".")} for a, deps in g.items()}
    done, path = set(), []

    def visit(a):
        if a in path:
            raise AssertionError("import circle: " + " -> ".join(path[path.index(a):] + [a]))
        if a in done:
            return
        path.append(a)
        for b in sorted(g.get(a, ())):
            visit(b)
        path.pop()
        done.add(a)

    for a in sorted(g):
        visit(a)
