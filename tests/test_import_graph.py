"""The package's import graph flows one way (README "Layout"), so the layout stays true.

Every ``import`` / ``from ... import`` statement of every module of ``vla_torchrl`` is read with
:mod:`ast` (function-level imports included: a lazy import is still a dependency) and checked:

1. no upward import: a module imports only its own layer or layers below it (:data:`LAYERS`);
   two layers on the same floor (``envs`` and ``modules``; ``errors``, ``keys`` and ``assets``)
   do not import each other;
2. no cycle between modules;
3. ``recipes/`` holds command lines side by side: no CLI imports another (all may use
   ``recipes._cli``);
4. no two modules with the same file name in different layers.

The floors, bottom to top, and why that order (it is the order the code needs, nothing more):

- ``errors``, ``keys``, ``assets``: import nothing of the package.
- ``utils``: device, seeding, logging, rendering, plain collectives; imports no other layer.
- ``objectives``: TorchRL-style functional maths and losses. They know tensordicts, keys and
  (for the global-batch statistics) utils' collectives, never envs or models: a loss takes its
  evaluator module as an argument. Below ``envs`` because the env-side episode statistics
  (``envs.episodes``) reuse its segment sums.
- ``envs``, ``modules``: the simulator side and the model side, siblings that never meet except
  in the layers above.
- ``config``: the typed run configs (``TrainConfig``, ``CollectConfig``) and their Hydra loading;
  they describe envs, models and objectives by name and import none of them, but nothing below
  may depend on a run config (e.g. ``envs.toy`` takes plain arguments).
- ``training``: the loop and its parts (run start, checkpoints, metrics, data parallel, saved
  policies, the recipes' env builder).
- ``evaluation``: evaluate saved policies, results, tables, reports. Above ``training`` because
  it loads policies saved by ``training.policy`` and builds envs through
  ``training.environments``; training never imports evaluation (its periodic evaluation runs
  episodes through ``envs.episodes``).
- ``studies``: the paper's studies, which train (``training``) and evaluate (``evaluation``).
- ``recipes``: the command lines.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

PACKAGE = "vla_torchrl"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

#: bottom to top; a tuple is one floor of siblings
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "keys", "assets"),
    ("utils",),
    ("objectives",),
    ("envs", "modules"),
    ("config",),
    ("training",),
    ("evaluation", "planning"),
    ("studies",),
    ("recipes",),
)
FLOOR = {layer: i for i, floor in enumerate(LAYERS) for layer in floor}
#: the one module of ``recipes/`` that is not a command line: the error wrapper they share
CLI_SHARED = {f"{PACKAGE}.recipes", f"{PACKAGE}.recipes._cli"}


# -- reading the graph ---------------------------------------------------------------------------
def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def read_package(root: Path) -> tuple[dict[str, Path], dict[str, set[str]]]:
    """``{module: file}`` and ``{module: imported package modules}`` of the package at ``root``."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        graph[name] = imports_of(ast.parse(path.read_text()), name, is_package, set(files))
    return files, graph


def imports_of(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The package modules ``tree`` imports, at any depth (function bodies too).

    ``from a.b import c`` depends on ``a.b.c`` when that is a module, else on ``a.b``.
    """
    package = module if is_package else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                out.add(sub if sub in known else source)
    return {m for m in out if m == PACKAGE or m.startswith(PACKAGE + ".")}


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "errors"  # the package's __init__: the ground floor


# -- the checks ----------------------------------------------------------------------------------
def upward_imports(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """``"a -> b"`` for every import of a layer that is not below (or equal to) the importer's."""
    bad = []
    for src, targets in graph.items():
        for dst in targets:
            a, b = layer_of(src), layer_of(dst)
            if a == b:
                continue
            if a not in FLOOR or b not in FLOOR:
                bad.append(f"{src} -> {dst} (layer {a if a not in FLOOR else b!r} not in LAYERS)")
            elif FLOOR[b] >= FLOOR[a]:
                bad.append(f"{src} -> {dst} ({a} may not import {b})")
    return sorted(bad)


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The import cycles: strongly connected components with more than one module, or a module
    importing itself (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in graph.get(node, ()):
                        found.append(sorted(component))
    return sorted(found)


def cli_imports(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """``"a -> b"`` for every ``recipes`` command line importing another one."""
    recipes = f"{PACKAGE}.recipes"
    bad = []
    for src, targets in graph.items():
        if layer_of(src) != "recipes":
            continue
        for dst in targets:
            if layer_of(dst) == "recipes" and dst != src and dst not in CLI_SHARED:
                bad.append(f"{src} -> {dst}")
            if src in CLI_SHARED and src != recipes and dst.startswith(recipes) and dst != src:
                bad.append(f"{src} -> {dst} (the shared wrapper imports a CLI)")
    return sorted(set(bad))


def same_file_names(modules: Iterable[str]) -> dict[str, list[str]]:
    """File names (packages' ``__init__`` aside) found in more than one layer."""
    by_name: dict[str, set[str]] = {}
    for module in modules:
        if module == PACKAGE:
            continue
        by_name.setdefault(module.rpartition(".")[2], set()).add(module)
    out = {}
    for name, where in by_name.items():
        if len({layer_of(m) for m in where}) > 1:
            out[name] = sorted(where)
    return out


# -- the package ---------------------------------------------------------------------------------
FILES, GRAPH = read_package(ROOT)
# a package's own __init__ appears as a module; a sub-package's too
MODULES = [m for m, p in FILES.items() if p.name != "__init__.py"]


def test_every_layer_is_known():
    assert {layer_of(m) for m in FILES} <= set(FLOOR)


def test_no_upward_import():
    assert upward_imports(GRAPH) == []


def test_no_import_cycle():
    assert cycles(GRAPH) == []


def test_no_cli_imports_another_cli():
    assert cli_imports(GRAPH) == []


def test_no_file_name_in_two_layers():
    assert same_file_names(MODULES) == {}


def test_utils_imports_no_other_layer():
    assert not [
        (s, d)
        for s, ds in GRAPH.items()
        for d in ds
        if s.startswith(f"{PACKAGE}.utils") and layer_of(d) != "utils"
    ]


def test_the_graph_is_read():
    """The reader sees the imports it must see (function-level ones included)."""
    assert f"{PACKAGE}.training.loop" in GRAPH[f"{PACKAGE}.recipes.train"]
    assert f"{PACKAGE}.objectives.functional" in GRAPH[f"{PACKAGE}.objectives.advantages"]
    lazy = imports_of(
        ast.parse("def f():\n    from vla_torchrl.envs import toy\n"),
        "m",
        False,
        {"vla_torchrl.envs.toy"},
    )
    assert lazy == {"vla_torchrl.envs.toy"}


# -- the checker catches what it must (a tiny fake package) -------------------------------------
def _fake(tmp_path: Path, files: Mapping[str, str]) -> dict[str, set[str]]:
    root = tmp_path / PACKAGE
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for folder in {p.parent for p in root.rglob("*.py")} | {root}:
        (folder / "__init__.py").touch()
    return read_package(root)


def test_checker_catches_an_upward_import(tmp_path):
    _, graph = _fake(
        tmp_path,
        {
            "utils/a.py": "def f():\n    from vla_torchrl.training.loop import train\n",
            "training/loop.py": "from ..utils import a\n",  # relative, downward: fine
            "envs/x.py": "import vla_torchrl.modules.y\n",  # siblings
            "modules/y.py": "",
        },
    )
    assert upward_imports(graph) == [
        "vla_torchrl.envs.x -> vla_torchrl.modules.y (envs may not import modules)",
        "vla_torchrl.utils.a -> vla_torchrl.training.loop (utils may not import training)",
    ]


def test_checker_catches_a_cycle(tmp_path):
    _, graph = _fake(
        tmp_path,
        {
            "modules/openvla.py": "from vla_torchrl.modules.checkpoint import load\n",
            "modules/checkpoint.py": "def load():\n    from vla_torchrl.modules import openvla\n",
            "modules/lora.py": "from vla_torchrl.modules.openvla import OpenVLA\n",
        },
    )
    assert cycles(graph) == [["vla_torchrl.modules.checkpoint", "vla_torchrl.modules.openvla"]]
    assert cycles({"a": {"a"}, "b": {"a"}}) == [["a"]]


def test_checker_catches_a_cli_importing_a_cli(tmp_path):
    _, graph = _fake(
        tmp_path,
        {
            "recipes/_cli.py": "",
            "recipes/train.py": "from vla_torchrl.recipes._cli import run_cli\n",
            "recipes/demo.py": "from vla_torchrl.recipes.train import train\n",
        },
    )
    assert cli_imports(graph) == ["vla_torchrl.recipes.demo -> vla_torchrl.recipes.train"]


def test_checker_catches_a_file_name_in_two_layers():
    modules = [
        "vla_torchrl.recipes.train",
        "vla_torchrl.config.train",
        "vla_torchrl.envs.a.x",
        "vla_torchrl.envs.x",
    ]
    assert same_file_names(modules) == {
        "train": ["vla_torchrl.config.train", "vla_torchrl.recipes.train"]
    }


@pytest.mark.parametrize("layer", sorted(FLOOR))
def test_layers_exist(layer):
    assert (ROOT / layer).is_dir() or (ROOT / f"{layer}.py").is_file()
