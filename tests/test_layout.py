"""The package's shape: no import cycles (imports inside functions and under TYPE_CHECKING
count), no module far over 400 lines, and the folders the design names."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "poller"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every poller module `path` imports, wherever the import statement is."""
    out = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + [base]
                ).strip(".")
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names
            ]
        else:
            continue
        out |= {t for t in targets if t in known and t != name}
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_no_import_cycle():
    # GIVEN every module of poller/ and every poller import in it (in functions too)
    found = modules()
    graph = {name: imports_of(name, path, set(found)) for name, path in found.items()}
    # THEN following imports never leads back to where it started
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_is_far_over_400_lines():
    long = {name: n for name, p in modules().items() if (n := len(p.read_text().splitlines())) > 420}
    assert long == {}


def test_the_folders_show_the_architecture():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert {"daemon", "pipeline", "handlers", "ops", "cli", "dev"} <= folders
    for contract in ("__init__.py", "message.py", "errors.py", "config.py", "sqs.py", "aws.py"):
        assert (PACKAGE / contract).exists()


# Layers, bottom to top: the contract and shared modules (poller.*), then pipeline and handlers,
# then the daemon and ops, then cli and dev. A module may import its own layer or those below.
LAYERS = {"pipeline": 1, "handlers": 1, "daemon": 2, "ops": 2, "cli": 3, "dev": 3, "__main__": 3}
# Composition roots and one owner may reach further, each for a reason:
ALLOWED = {
    "poller.pipeline.build -> poller.handlers.lambda_event",  # filters match Lambda's record shape
    "poller.config -> poller.pipeline.filters",  # the config is checked by the one pattern compiler
}


def layer_of(name: str) -> int:
    parts = name.split(".")
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else 0


def test_no_import_runs_up_the_layers():
    # GIVEN every poller import
    found = modules()
    upward = sorted(
        f"{name} -> {target}"
        for name, path in found.items()
        for target in imports_of(name, path, set(found))
        if f"{name} -> {target}" not in ALLOWED
        and (
            layer_of(target) > layer_of(name)
            or (layer_of(target) == layer_of(name) == 1 and target.split(".")[1] != name.split(".")[1])
        )
    )
    # THEN none reaches a higher layer, nor across from handlers to pipeline (or back)
    assert upward == []
