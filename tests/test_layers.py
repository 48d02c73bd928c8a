"""The layers of CONTRIBUTING.md, read from the imports of every module under ``src/cio_relay``.

A module may import its own layer and the layers below it, never one above; the emulator stands
apart (it may import only the few core helpers listed here, and only faces may import it); and
no two modules import each other, directly or around a longer loop, not even for type checking
or inside a function. Adding a module means giving it a layer below, or this test fails.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "cio_relay"

#: Lower numbers may be imported by higher ones: core 0, parts 1, features 2, faces 3.
CORE, PARTS, FEATURES, FACES = 0, 1, 2, 3
LAYER_NAMES = {CORE: "core", PARTS: "parts", FEATURES: "features", FACES: "faces"}

#: The layer of each module, by the longest matching dotted prefix.
LAYERS: dict[str, int] = {
    "cio_relay.backoff": CORE,
    "cio_relay.clock": CORE,
    "cio_relay.config": CORE,
    "cio_relay.config_sources": CORE,
    "cio_relay.digits": CORE,
    "cio_relay.errors": CORE,
    "cio_relay.http_guard": CORE,
    "cio_relay.json_values": CORE,
    "cio_relay.kept_json": CORE,
    "cio_relay.operations": CORE,
    "cio_relay.plain_text": CORE,
    "cio_relay.serving": CORE,
    "cio_relay.sqlite": CORE,
    "cio_relay.asgi_body": CORE,
    "cio_relay.webhooks.signature": CORE,
    "cio_relay.customerio": PARTS,
    "cio_relay.lake": PARTS,
    "cio_relay.outbox": PARTS,
    "cio_relay.delivery": FEATURES,
    "cio_relay.guarded_outbox": FEATURES,
    "cio_relay.observability": FEATURES,
    "cio_relay.relay": FEATURES,
    "cio_relay.sync": FEATURES,
    "cio_relay.webhooks": FEATURES,
    "cio_relay": FACES,  # the package root: the public surface re-exports the layers below
    "cio_relay.__main__": FACES,
    "cio_relay.cli": FACES,
    "cio_relay.server": FACES,
}

EMULATOR = "cio_relay.emulator"
#: What the emulator may use of the client: none of its request building or limit checks, so a
#: misunderstanding shared by both cannot pass every test.
EMULATOR_MAY_IMPORT = frozenset(
    {
        "cio_relay.digits",
        "cio_relay.http_guard",
        "cio_relay.kept_json",
        "cio_relay.serving",
        "cio_relay.webhooks.signature",
    }
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted((SOURCE / PACKAGE).rglob("*.py"))}


def imported_modules(name: str, path: Path, known: set[str]) -> Iterator[str]:
    """Every cio_relay module ``name`` imports anywhere in its file (lazy and typing-only too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, package)
            if base not in known:
                continue
            submodules = [f"{base}.{alias.name}" for alias in node.names]
            found = [sub for sub in submodules if sub in known]
            # `from pkg import module` imports the module; `from pkg import name` the package.
            yield from found if len(found) == len(submodules) else [base, *found]


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if node.level == 0:
        return node.module or ""
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


def layer_of(name: str) -> int | None:
    matches = [prefix for prefix in LAYERS if name == prefix or name.startswith(prefix + ".")]
    return LAYERS[max(matches, key=len)] if matches else None


MODULES = all_modules()
GRAPH = {
    name: sorted(set(imported_modules(name, path, set(MODULES))) - {name})
    for name, path in MODULES.items()
}


def test_every_module_has_a_layer() -> None:
    unplaced = [
        name for name in MODULES if not name.startswith(EMULATOR) and layer_of(name) is None
    ]
    assert unplaced == [], f"give these modules a layer in tests/test_layers.py: {unplaced}"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not n.startswith(EMULATOR)))
def test_imports_run_downwards(name: str) -> None:
    own = layer_of(name)
    assert own is not None
    upward = [
        f"{target} ({LAYER_NAMES[layer]})"
        for target in GRAPH[name]
        if not target.startswith(EMULATOR)
        and (layer := layer_of(target)) is not None
        and layer > own
    ]
    assert upward == [], f"{name} ({LAYER_NAMES[own]}) imports a higher layer: {upward}"


def test_only_faces_import_the_emulator() -> None:
    importers = {
        name
        for name, targets in GRAPH.items()
        if not name.startswith(EMULATOR) and any(t.startswith(EMULATOR) for t in targets)
    }
    assert {name for name in importers if layer_of(name) != FACES} == set()


def test_the_emulator_stands_apart() -> None:
    borrowed = {
        target
        for name, targets in GRAPH.items()
        if name.startswith(EMULATOR)
        for target in targets
        if not target.startswith(EMULATOR)
    }
    assert borrowed <= EMULATOR_MAY_IMPORT, sorted(borrowed - EMULATOR_MAY_IMPORT)


def test_no_import_cycles() -> None:
    cycles = [cycle for cycle in _cycles(GRAPH) if not _is_package_and_child(cycle)]
    assert cycles == [], "modules that import each other: " + "; ".join(
        " -> ".join(cycle) for cycle in cycles
    )


def _is_package_and_child(cycle: list[str]) -> bool:
    """A package's ``__init__`` re-exporting its modules, which import a sibling through the
    package, is how Python packages are made; only a loop between two real modules is a cycle."""
    return len(cycle) == 3 and (
        cycle[1].startswith(cycle[0] + ".") or cycle[0].startswith(cycle[1] + ".")
    )


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """One loop per strongly connected component (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    loops: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = _pop_component(stack, on_stack, node)
                    if len(component) > 1:
                        loops.append(_loop_through(component, graph))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(graph.get(child, []))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return loops


def _pop_component(stack: list[str], on_stack: set[str], root: str) -> list[str]:
    component: list[str] = []
    while True:
        node = stack.pop()
        on_stack.discard(node)
        component.append(node)
        if node == root:
            return component


def _loop_through(component: list[str], graph: dict[str, list[str]]) -> list[str]:
    """A shortest path from the component's first module back to itself, for the message."""
    members = set(component)
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for child in graph.get(node, []):
                if child == start:
                    return [*paths[node], start]
                if child in members and child not in paths:
                    paths[child] = [*paths[node], child]
                    following.append(child)
        frontier = following
    return [*component, component[0]]


def test_the_checks_see_a_wrong_import() -> None:
    """The reader above finds a cycle and an upward import when there is one."""
    graph = {"a": ["b"], "b": ["c"], "c": ["a"], "d": []}
    assert _cycles(graph) == [["a", "b", "c", "a"]]
    assert layer_of("cio_relay.outbox.sqlite") == PARTS
    assert layer_of("cio_relay.webhooks.signature") == CORE
    assert layer_of("cio_relay.webhooks.router") == FEATURES
