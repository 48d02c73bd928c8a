"""Which way the emulator's imports run: read from the source, so a TYPE_CHECKING import counts."""

from __future__ import annotations

import ast
from pathlib import Path

import cio_relay.emulator

_PACKAGE = Path(cio_relay.emulator.__file__).parent
# The modules above app.py: they build or export the app, nothing below may import it.
_ABOVE_APP = {"__init__", "server"}


def _imports(module: Path) -> set[str]:
    """Absolute names of what ``module`` imports (``.app`` read as ``cio_relay.emulator.app``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "cio_relay.emulator." * (node.level > 0) + (node.module or "")
            names.add(base.rstrip("."))
            names.update(f"{base.rstrip('.')}.{alias.name}" for alias in node.names)
    return names


def _modules() -> dict[str, set[str]]:
    return {path.stem: _imports(path) for path in sorted(_PACKAGE.glob("*.py"))}


def test_no_module_below_the_app_imports_it() -> None:
    modules = _modules()
    assert {"app", "context", "track_v2"} <= modules.keys()
    importers = {name for name, imported in modules.items() if "cio_relay.emulator.app" in imported}
    assert importers <= _ABOVE_APP


def test_the_emulator_imports_none_of_the_clients_request_building_or_limits() -> None:
    forbidden = ("cio_relay.operations", "cio_relay.customerio")
    offenders = {
        name: sorted(i for i in imported if i.startswith(forbidden))
        for name, imported in _modules().items()
        if any(i.startswith(forbidden) for i in imported)
    }
    assert offenders == {}
