"""The house's layers (docs/architecture.md): every import points down, none runs in a circle, and every module
has a layer, so a new module cannot slip past the contract. The contract is ``[tool.importlinter]`` in
pyproject.toml, checked by import-linter's own ``lint-imports``; the circle check covers imports inside one layer
(e.g. two modules of ``agents``), which a layers contract does not see."""

from __future__ import annotations

import os
from pathlib import Path

import grimp
import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"


def _config() -> dict:
    return tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]


def _layers() -> list[list[str]]:
    """The contract's layers, top first, each a list of its module names."""
    (contract,) = [c for c in _config()["contracts"] if c["type"] == "layers"]
    return [[m.strip() for m in layer.replace(":", "|").split("|")] for layer in contract["layers"]]


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    config = _config()
    return grimp.build_graph(*config["root_packages"], exclude_type_checking_imports=True, cache_dir=None)


def _layer_of(module: str, layers: list[list[str]]) -> int | None:
    for depth, layer in enumerate(layers):
        if any(module == m or module.startswith(m + ".") for m in layer):
            return depth
    return None


def test_the_layers_contract_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """import-linter's verdict on the contract: no import from a lower layer to a higher one, none between
    independent siblings (``|``), lazy imports inside functions included."""
    from importlinter.cli import lint_imports

    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=str(PYPROJECT), no_cache=True, no_logo=True) == 0


def test_every_module_has_a_layer(graph: grimp.ImportGraph) -> None:
    """Only the package roots stand outside the layers (``mtg_env/__init__.py`` re-exports the public names)."""
    layers = _layers()
    roots = set(_config()["root_packages"]) - {m for layer in layers for m in layer}
    outside = sorted(m for m in graph.modules if m not in roots and _layer_of(m, layers) is None)
    assert not outside, f"modules with no layer in pyproject's [tool.importlinter] contract: {outside}"


def test_no_import_runs_in_a_circle(graph: grimp.ImportGraph) -> None:
    """No strongly connected component of two or more modules (Tarjan's algorithm over the module graph)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    assert not circles, f"imports in a circle: {circles}"


def test_the_game_library_never_imports_the_players(graph: grimp.ImportGraph) -> None:
    """``import mtg_env`` loads the game (layers up to the wrappers) and nothing of ``agents`` or above, so
    ``agents`` can import the game without loading the bench, tuning, audit or CLI that play it."""
    layers = _layers()
    agents_depth = _layer_of("agents", layers)
    assert agents_depth is not None
    for module in graph.find_modules_directly_imported_by("mtg_env"):
        depth = _layer_of(module, layers)
        assert depth is not None and depth > agents_depth, f"mtg_env/__init__.py imports {module}, at or above agents"
    assert not graph.chain_exists(importer="mtg_env.envs", imported="agents", as_packages=True)


def test_no_source_file_is_over_500_lines() -> None:
    """Files a reader can hold in mind: the package and the players, each at most about 500 lines."""
    long = {
        str(p.relative_to(ROOT)): n
        for base in ("mtg_env", "agents")
        for p in (ROOT / base).rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 500
    }
    assert not long, f"files over 500 lines: {dict(sorted(long.items(), key=lambda kv: -kv[1]))}"


def test_the_contract_fails_on_an_upward_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same contract on a copy of the two packages with one upward import added (the engine importing the
    env) is broken: the check can fail."""
    import shutil

    from importlinter.cli import lint_imports

    for package in _config()["root_packages"]:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    core = tmp_path / "mtg_env" / "engine" / "features.py"
    core.write_text(core.read_text() + "\nfrom mtg_env.envs import parallel as _upward  # noqa\n")
    shutil.copy(PYPROJECT, tmp_path / "pyproject.toml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for name in [m for m in list(__import__("sys").modules) if m.split(".")[0] in ("mtg_env", "agents")]:
        monkeypatch.delitem(__import__("sys").modules, name)
    assert lint_imports(config_filename=str(tmp_path / "pyproject.toml"), no_cache=True, no_logo=True) == 1
