"""The library's layers (docs/architecture.md): each lapinfra module has one, and imports
only from its own layer or the ones below it; no two modules import each other, even
through others; and no lapinfra module is imported inside a function (a lazy import is
for a slow third-party package, never to dodge a circle).

    model       the configuration and what is derived from it, and the records' paths
    local       the workstation: project, secrets, images, rendering, git, output
    transport   reaching a node: Vagrant and SSH, tunnels, the master's session, the
                registry's and the DNS server's clients, the environment's lock file
    ops         decisions and actions on a node (the swarm, the backup tool); no ops
                module imports another
    workflows   the commands: a deploy's phases, start and stop, backup and restore, apps,
                node.up, status, verification, promotion

The imports are read with ast (module level, ``if TYPE_CHECKING:`` blocks and function
bodies alike), so nothing is imported to check them.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

ORDER = ("model", "local", "transport", "ops", "workflows")

LAYERS = {
    # model: the configuration, what derives from it, the records on the master
    "errors": "model",
    "envname": "model",
    "configfile": "model",
    "aptsources": "model",
    "services": "model",
    "config": "model",
    "records": "model",
    "actions": "model",
    # local: the workstation
    "report": "local",
    "confirm": "local",
    "invoke_ext": "local",
    "gitinfo": "local",
    "buildstamp": "local",
    "images": "local",
    "base": "local",
    "secrets": "local",
    "certs": "local",
    "rotate": "local",
    "render": "local",
    "configdoc": "local",
    "project": "local",
    # transport: reaching a node
    "tunnel": "transport",
    "nodes": "transport",
    "session": "transport",
    "registry": "transport",
    "ddns": "transport",
    "lock": "transport",
    "facts": "transport",
    "gitpush": "transport",
    # ops: decisions and actions on a node
    "swarm": "ops",
    "backuptool": "ops",
    "decisions": "ops",
    "executor": "ops",
    # workflows: the commands
    "apps": "workflows",
    "phases": "workflows",
    "deploy": "workflows",
    "startstop": "workflows",
    "nodeup": "workflows",
    "backup": "workflows",
    "status": "workflows",
    "verify": "workflows",
    "promote": "workflows",
}

LIBRARY = ROOT / "lapinfra"


@dataclass(frozen=True)
class Import:
    module: str          # the importing module, e.g. "deploy"
    target: str          # the lapinfra module it imports, e.g. "session"
    line: int
    function: str        # the function it sits in; "" at module level

    def where(self) -> str:
        inside = f" (inside {self.function}())" if self.function else ""
        return f"lapinfra/{self.module}.py line {self.line}{inside}: imports lapinfra.{self.target}"


def modules(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__")


def imports(folder: Path, module: str) -> list[Import]:
    """Every import of a lapinfra module by ``module``: ``from . import x``, ``from .x import y``,
    ``from lapinfra(.x) import y``, ``import lapinfra.x``, wherever it stands."""
    known = set(modules(folder))
    tree = ast.parse((folder / f"{module}.py").read_text(), filename=f"lapinfra/{module}.py")
    found: list[Import] = []

    def targets(node) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name.split(".")[1] for a in node.names if a.name.startswith("lapinfra.")]
        absolute = node.module == "lapinfra" or (node.module or "").startswith("lapinfra.")
        if node.level > 1 or (node.level == 0 and not absolute):
            return []
        base = node.module if node.level == 1 else node.module.removeprefix("lapinfra").lstrip(".")
        if base:
            return [base.split(".")[0]]
        return [a.name for a in node.names if a.name in known]     # from . import x, y

    def visit(node, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.extend(Import(module, t, child.lineno, function) for t in targets(child))
            inside = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else ""
            visit(child, function or inside)      # a nested function's import is its outermost function's

    visit(tree, "")
    return found


def all_imports(folder: Path) -> list[Import]:
    return [i for m in modules(folder) for i in imports(folder, m)]


# ---- the rules: each a list of messages naming the module, the line and the rule --------

def unlayered(folder: Path, layers: dict[str, str]) -> list[str]:
    present = set(modules(folder))
    return ([f"lapinfra/{m}.py has no layer: add it to LAYERS in tests/unit/test_layers.py (one of {', '.join(ORDER)})"
             for m in sorted(present - set(layers))]
            + [f"LAYERS names lapinfra.{m}, which is no module of lapinfra/: remove it" for m in sorted(set(layers) - present)]
            + [f"LAYERS puts lapinfra.{m} in {layers[m]!r}, which is no layer (one of {', '.join(ORDER)})"
               for m in sorted(present & set(layers)) if layers[m] not in ORDER])


def function_level(found: list[Import]) -> list[str]:
    return [f"{i.where()}: no lapinfra module is imported inside a function (import it at the top; "
            f"only a slow third-party package may be imported where it is used)" for i in found if i.function]


def upward(found: list[Import], layers: dict[str, str]) -> list[str]:
    out = []
    for i in found:
        if i.module not in layers or i.target not in layers or layers[i.module] not in ORDER or layers[i.target] not in ORDER:
            continue
        mine, theirs = ORDER.index(layers[i.module]), ORDER.index(layers[i.target])
        if theirs > mine:
            out.append(f"{i.where()}, of layer {layers[i.target]}, from layer {layers[i.module]}: "
                       f"a module imports only from its own layer and those below it ({' < '.join(ORDER)})")
        elif theirs == mine and layers[i.module] == "ops" and i.target != i.module:
            out.append(f"{i.where()}: no ops module imports another (both are ops: share what they need from a lower layer)")
    return out


def circles(found: list[Import]) -> list[str]:
    """Each set of modules that import each other (directly or through others), as one
    path around it with the line of every import on it."""
    edges: dict[str, dict[str, Import]] = {}
    for i in found:
        edges.setdefault(i.module, {}).setdefault(i.target, i)
    # Tarjan's strongly connected components
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, {})):
            if w not in index:
                connect(w)
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
            if len(component) > 1 or v in edges.get(v, {}):
                components.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    out = []
    for component in components:
        path = _cycle(component, edges)
        steps = "; ".join(edges[a][b].where() for a, b in zip(path, path[1:]))
        out.append(f"import circle {' -> '.join(path)} (modules {', '.join(component)} import each other): {steps}")
    return out


def _cycle(component: list[str], edges: dict[str, dict[str, Import]]) -> list[str]:
    """A shortest path from the component's first module back to itself, within the component."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(edges.get(v, {})):
            if w == start:
                return paths[v] + [start]
            if w in members and w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    return [start, start]


def check(folder: Path, layers: dict[str, str]) -> dict[str, list[str]]:
    found = all_imports(folder)
    return {"layer": unlayered(folder, layers), "circle": circles(found),
            "upward": upward(found, layers), "function": function_level(found)}


# ---- the library ----------------------------------------------------------------------

RULES = {"layer": "every module has a layer", "circle": "no import circle",
         "upward": "imports point only downwards", "function": "no lapinfra import inside a function"}


@pytest.mark.parametrize("rule", list(RULES))
def test_the_library_keeps_its_layers(rule):
    broken = check(LIBRARY, LAYERS)[rule]
    assert not broken, f"{RULES[rule]}:\n  " + "\n  ".join(broken)


def test_the_checker_reads_every_form_of_import():
    found = {(i.module, i.target, bool(i.function)) for i in all_imports(LIBRARY)}
    assert ("deploy", "session", False) in found      # from .session import MasterSession
    assert ("phases", "apps", False) in found         # from . import apps, ddns, decisions, ...
    assert ("base", "config", False) in found         # if TYPE_CHECKING: from .config import BaseImage
    assert len(found) > 60


# What a lazy import is for: `import tasks` (every invoke command, a no-op build) and a
# Project (every task, a full build) load none of the slow packages they do not use.
SLOW_FOR_TASKS = ("pydantic", "docker", "rich", "cryptography", "fabric", "dns", "requests")
SLOW_FOR_A_PROJECT = ("docker", "cryptography", "bcrypt", "fabric", "paramiko", "dns", "requests")


@pytest.mark.parametrize("statement, slow", [("import tasks", SLOW_FOR_TASKS), ("import lapinfra.project", SLOW_FOR_A_PROJECT)])
def test_slow_packages_are_imported_only_where_they_are_used(statement, slow):
    probe = f"import sys; {statement}; print(' '.join(m for m in {slow!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert loaded == [], f"`{statement}` loads {', '.join(loaded)}"


# ---- the checker, on a library that breaks each rule -----------------------------------

def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir()
    for name, text in files.items():
        (folder / f"{name}.py").write_text(text)
    return folder


def test_each_rule_names_the_module_the_line_and_the_rule(tmp_path):
    lib = write(tmp_path / "lapinfra", {
        "config": "from . import errors\n",
        "errors": "X = 1\n",
        "nodes": "import os\n\n\ndef up():\n    from .deploy import start\n    return start\n",  # inside a function, upwards, circle
        "deploy": "from .nodes import up\nfrom lapinfra import swarm\n",
        "swarm": "from . import tunnel\n",                 # ops importing ops
        "tunnel": "from lapinfra.config import X\n",
        "fresh": "from . import config\n",                 # no layer
    })
    layers = {"config": "model", "errors": "model", "nodes": "transport", "deploy": "workflows",
              "swarm": "ops", "tunnel": "ops", "gone": "local"}
    broken = check(lib, layers)
    assert broken["layer"] == [
        "lapinfra/fresh.py has no layer: add it to LAYERS in tests/unit/test_layers.py (one of model, local, transport, ops, workflows)",
        "LAYERS names lapinfra.gone, which is no module of lapinfra/: remove it"]
    assert broken["function"] == [
        "lapinfra/nodes.py line 5 (inside up()): imports lapinfra.deploy: no lapinfra module is imported inside a function "
        "(import it at the top; only a slow third-party package may be imported where it is used)"]
    assert broken["upward"] == [
        "lapinfra/nodes.py line 5 (inside up()): imports lapinfra.deploy, of layer workflows, from layer transport: "
        "a module imports only from its own layer and those below it (model < local < transport < ops < workflows)",
        "lapinfra/swarm.py line 1: imports lapinfra.tunnel: no ops module imports another "
        "(both are ops: share what they need from a lower layer)"]
    assert broken["circle"] == [
        "import circle deploy -> nodes -> deploy (modules deploy, nodes import each other): "
        "lapinfra/deploy.py line 1: imports lapinfra.nodes; lapinfra/nodes.py line 5 (inside up()): imports lapinfra.deploy"]


def test_a_circle_through_several_modules_is_one_failure_that_shows_the_whole_path(tmp_path):
    lib = write(tmp_path / "lapinfra", {"a": "from . import b\n", "b": "from .c import f\n", "c": "import lapinfra.a\n", "d": "from . import a\n"})
    assert check(lib, dict.fromkeys("abcd", "workflows"))["circle"] == [
        "import circle a -> b -> c -> a (modules a, b, c import each other): lapinfra/a.py line 1: imports lapinfra.b; "
        "lapinfra/b.py line 1: imports lapinfra.c; lapinfra/c.py line 1: imports lapinfra.a"]
