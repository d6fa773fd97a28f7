"""The package's architecture, read from the source with ``ast`` (nothing is imported).

Every ``import`` statement counts, at module level and inside functions (and under
``if TYPE_CHECKING``): a lazy import is still a dependency. Strings are not imports, so the
lazy ``_LAZY`` tables of the ``__init__`` files and ``_compat.MOVED`` are not edges.

Rules (each test lists all of its violations at once):

* no import cycles between modules;
* layers, from high to low: ``_napari | cli | demo`` > ``batch`` > ``segment | train | io`` >
  ``stacks`` > ``predict`` > ``model | weights`` > helpers (``_atomic``, ``masks``,
  ``_compat``, ``_tensorflow`` and ``napari_sam/__init__``). A module imports its own layer
  or lower ones;
* only ``napari_sam._napari`` imports napari, Qt, magicgui, superqt or vispy;
* no module imports a private name (``_x``, not a dunder) of another module, neither with
  ``from .m import _x`` nor as ``m._x`` on a module it imported;
* at most 6 modules directly in ``src/napari_sam`` (besides packages and ``__init__.py``),
  and no source file over 400 lines.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src"
PKG = "napari_sam"

LAYERS = [  # high to low; the key is the first name below napari_sam (or the module itself)
    ("gui/cli/demo", {"_napari", "cli", "demo"}),
    ("batch", {"batch"}),
    ("segment/train/io", {"segment", "train", "io"}),
    ("stacks", {"stacks"}),
    ("predict", {"predict"}),
    ("model/weights", {"model", "weights"}),
    (
        "helpers",
        {"_atomic", "masks", "_compat", "_tensorflow", ""},
    ),  # "" is napari_sam/__init__ itself
]
GUI_PACKAGES = {"napari", "qtpy", "magicgui", "superqt", "vispy"}
GUI_PACKAGES |= {"PyQt5", "PyQt6", "PySide2", "PySide6"}
GUI_HOME = f"{PKG}._napari"
MAX_TOP_MODULES = 6
MAX_LINES = 400


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the napari_sam module it names, or the external top-level package
    line: int
    names: tuple[str, ...] = ()  # ``from target import names`` (names that are not submodules)
    internal: bool = True


class Source:
    """The modules of the package under ``root`` and their imports, parsed once."""

    def __init__(self, root: Path = ROOT):
        self.root = root
        paths = sorted((root / PKG).rglob("*.py"))
        self.modules = {self.module_name(p): p for p in paths}
        self.trees = {m: ast.parse(p.read_text(), str(p)) for m, p in self.modules.items()}
        self.imports = tuple(i for m, t in self.trees.items() for i in self.imports_of(m, t))

    def module_name(self, path: Path) -> str:
        parts = list(path.relative_to(self.root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        return ".".join(parts)

    def package_of(self, module: str) -> str:
        """The package that relative imports in ``module`` start from."""
        is_package = self.modules[module].name == "__init__.py"
        return module if is_package else module.rpartition(".")[0]

    def resolve(self, module: str, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = self.package_of(module).split(".")
        base = base[: len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    def imports_of(self, mod: str, tree: ast.Module):
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield self.edge(mod, alias.name, node.lineno)
            elif isinstance(node, ast.ImportFrom):
                base = self.resolve(mod, node)
                plain = []
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    if sub in self.modules:  # ``from . import x`` with x a submodule imports x
                        yield self.edge(mod, sub, node.lineno)
                    else:
                        plain.append(alias.name)
                if plain:
                    yield self.edge(mod, base, node.lineno, tuple(plain))

    def edge(self, mod: str, name: str, line: int, names: tuple[str, ...] = ()) -> Import:
        if name == PKG or name.startswith(PKG + "."):
            # ``import a.b`` and ``from a.b import c`` both need the module a.b
            known = name in self.modules
            return Import(mod, name if known else f"?{name}", line, names)
        return Import(mod, name.split(".")[0], line, names, internal=False)

    def where(self, module: str, line: int) -> str:
        return f"{self.modules[module].relative_to(self.root)}:{line}"

    def graph(self) -> dict[str, set[str]]:
        out = {m: set() for m in self.modules}
        for imp in self.imports:
            if imp.internal and imp.target in out and imp.target != imp.module:
                out[imp.module].add(imp.target)
        return out


@cache
def source() -> Source:
    return Source(ROOT)


def layer(module: str) -> int | None:
    key = module.split(".")[1] if "." in module else ""
    for rank, (_, members) in enumerate(LAYERS):
        if key in members:
            return rank
    return None


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Cycles that cover every module of each strongly connected component (shortest first)."""
    index, low, stack, on, comps = {}, {}, [], set(), []

    def visit(v):  # Tarjan; the graph has ~70 nodes, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(comp)

    for v in sorted(g):
        if v not in index:
            visit(v)
    found = []
    for comp in comps:
        left = set(comp)
        while left:  # a shortest cycle through each module that no cycle so far goes through
            cycle = shortest_cycle(g, comp, min(left))
            found.append(cycle)
            left -= set(cycle)
    return found


def shortest_cycle(g: dict[str, set[str]], comp: set[str], start: str) -> list[str]:
    paths, seen = [[start]], {start}
    while paths:  # breadth first, inside the component, back to start
        nxt = []
        for path in paths:
            for w in sorted(g[path[-1]] & comp):
                if w == start:
                    return path + [start]
                if w not in seen:
                    seen.add(w)
                    nxt.append(path + [w])
        paths = nxt
    raise AssertionError(comp)


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def module_aliases(src: Source, mod: str) -> dict[str, str]:
    """Local names bound to napari_sam modules anywhere in ``mod`` (by imports)."""
    out = {}
    for node in ast.walk(src.trees[mod]):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == PKG:
                    out[a.asname or PKG] = a.name if a.asname else PKG
        elif isinstance(node, ast.ImportFrom):
            base = src.resolve(mod, node)
            for a in node.names:
                if f"{base}.{a.name}" in src.modules:
                    out[a.asname or a.name] = f"{base}.{a.name}"
    return out


def dotted(node: ast.expr) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


# ------------------------------------------------------------------ the checks: violations


def unknown_modules(src: Source) -> list[str]:
    return [
        f"{src.where(i.module, i.line)} imports {i.target[1:]}"
        for i in src.imports
        if i.target.startswith("?")
    ]


def import_cycles(src: Source) -> list[str]:
    return [" -> ".join(c) for c in cycles(src.graph())]


def modules_in_no_layer(src: Source) -> list[str]:
    return [m for m in src.modules if layer(m) is None]


def upward_imports(src: Source) -> list[str]:
    bad = []
    for i in src.imports:
        if not i.internal or i.target.startswith("?"):
            continue
        mine, theirs = layer(i.module), layer(i.target)
        if mine is not None and theirs is not None and theirs < mine:
            bad.append(
                f"{i.module} ({LAYERS[mine][0]}) imports {i.target} ({LAYERS[theirs][0]}) "
                f"at {src.where(i.module, i.line)}"
            )
    return bad


def gui_imports(src: Source) -> list[str]:
    return [
        f"{i.module} imports {i.target} at {src.where(i.module, i.line)}"
        for i in src.imports
        if not i.internal
        and i.target in GUI_PACKAGES
        and not (i.module == GUI_HOME or i.module.startswith(GUI_HOME + "."))
    ]


def private_imports(src: Source) -> list[str]:
    return [
        f"{i.module} imports {i.target}.{n} at {src.where(i.module, i.line)}"
        for i in src.imports
        if i.internal and i.target != i.module
        for n in i.names
        if private(n)
    ]


def private_attributes(src: Source) -> list[str]:
    bad = []
    for mod, tree in src.trees.items():
        aliases = module_aliases(src, mod)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and private(node.attr)):
                continue
            chain = dotted(node.value)
            if not chain or chain[0] not in aliases:
                continue
            target = ".".join([aliases[chain[0]], *chain[1:]])
            if target in src.modules and target != mod:
                at = src.where(mod, node.lineno)
                bad.append(f"{mod} reads {target}.{node.attr} at {at}")
    return bad


def too_many_top_modules(src: Source) -> list[str]:
    top = sorted(p.name for p in (src.root / PKG).glob("*.py") if p.name != "__init__.py")
    return [f"{len(top)} modules in src/{PKG} (at most {MAX_TOP_MODULES}): {top}"] * (
        len(top) > MAX_TOP_MODULES
    )


def long_files(src: Source) -> list[str]:
    return [
        f"{p.relative_to(src.root)}: {n} lines"
        for p in sorted(src.root.rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    ]


def report(title: str, problems: list[str]) -> str:
    return f"{len(problems)} {title}:\n  " + "\n  ".join(problems)


# --------------------------------------------------------------------------- the tests


def test_the_import_graph_is_read_from_the_source():
    # a guard for the reader: edges that any version of the layout has
    g = source().graph()
    assert f"{PKG}._compat" in g[PKG]  # ``from . import _compat`` names the submodule
    # the _LAZY table is strings; _tensorflow gives the lazy __getattr__
    assert g[PKG] == {f"{PKG}._compat", f"{PKG}._tensorflow"}, g[PKG]
    assert not g[f"{PKG}._compat"], g[f"{PKG}._compat"]  # MOVED is strings
    assert f"{PKG}.stacks.view" in g[f"{PKG}.stacks"]
    assert any(f"{PKG}.model.sam" in g[m] for m in g if m.startswith(f"{PKG}.weights"))


def test_every_napari_sam_import_names_a_module_that_exists():
    bad = unknown_modules(source())
    assert not bad, report("imports of modules that do not exist", bad)


def test_no_import_cycles():
    bad = import_cycles(source())
    assert not bad, report("import cycles", bad)


def test_every_module_is_in_a_layer():
    bad = modules_in_no_layer(source())
    assert not bad, report("modules in no layer (add them to LAYERS)", bad)


def test_modules_import_only_their_own_layer_or_lower_ones():
    bad = upward_imports(source())
    assert not bad, report("imports of a higher layer", bad)


def test_only_the_napari_package_imports_gui_libraries():
    bad = gui_imports(source())
    assert not bad, report(f"GUI imports outside {GUI_HOME}", bad)


def test_no_module_imports_a_private_name_of_another():
    bad = private_imports(source())
    assert not bad, report("imports of private names", bad)


def test_no_module_reads_a_private_attribute_of_another_module():
    bad = private_attributes(source())
    assert not bad, report("reads of private module attributes", bad)


def test_few_top_level_modules_and_no_long_files():
    bad = too_many_top_modules(source()) + long_files(source())
    assert not bad, report("size violations", bad)


FAKE = {  # a package that breaks every rule once
    "__init__.py": "from . import _compat\n_LAZY = {'X': 'napari_sam.cli.entry'}\n",
    "_compat.py": "MOVED = {'napari_sam.old': 'napari_sam.stacks.view'}\n",
    "masks.py": "",
    "stacks/__init__.py": "from .view import View\n",
    "stacks/view.py": (
        "import napari_sam.predict.core as core\n"
        "from napari_sam import masks\n"
        "class View:\n"
        "    def f(self):\n"
        "        from ..batch.run import go  # upward, in a function\n"
        "        return core._hidden, masks._secret, go\n"
    ),
    "predict/__init__.py": "",
    "predict/core.py": "from ..stacks import View\nfrom . import helper\nimport qtpy\n",
    "predict/helper.py": "from .core import _private\nfrom napari_sam.gone import x\n",
    "batch/__init__.py": "",
    "batch/run.py": "import napari_sam.stacks.view\nnapari_sam.stacks.view._y = 1\n",
    "_napari/__init__.py": "",
    "_napari/_widget.py": "import napari\nfrom qtpy.QtCore import Qt\n",
    "odd.py": "\n" * (MAX_LINES + 1),
}


def test_the_checks_find_each_kind_of_violation(tmp_path):
    for name, text in FAKE.items():
        path = tmp_path / PKG / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    src = Source(tmp_path)
    p = PKG
    assert unknown_modules(src) == [f"{p}/predict/helper.py:2 imports {p}.gone"]
    assert import_cycles(src) == [
        f"{p}.batch.run -> {p}.stacks.view -> {p}.batch.run",
        f"{p}.predict.core -> {p}.predict.helper -> {p}.predict.core",
        f"{p}.stacks -> {p}.stacks.view -> {p}.predict.core -> {p}.stacks",
    ]
    assert modules_in_no_layer(src) == [f"{p}.odd"]
    assert upward_imports(src) == [
        f"{p}.predict.core (predict) imports {p}.stacks (stacks) at {p}/predict/core.py:1",
        f"{p}.stacks.view (stacks) imports {p}.batch.run (batch) at {p}/stacks/view.py:5",
    ]
    assert gui_imports(src) == [f"{p}.predict.core imports qtpy at {p}/predict/core.py:3"]
    assert private_imports(src) == [
        f"{p}.predict.helper imports {p}.predict.core._private at {p}/predict/helper.py:1"
    ]
    assert sorted(private_attributes(src)) == [
        f"{p}.batch.run reads {p}.stacks.view._y at {p}/batch/run.py:2",
        f"{p}.stacks.view reads {p}.masks._secret at {p}/stacks/view.py:6",
        f"{p}.stacks.view reads {p}.predict.core._hidden at {p}/stacks/view.py:6",
    ]
    assert long_files(src) == [f"{p}/odd.py: {MAX_LINES + 1} lines"]
    assert not too_many_top_modules(src)
    for i in range(MAX_TOP_MODULES):
        (tmp_path / PKG / f"extra{i}.py").write_text("")
    assert len(too_many_top_modules(Source(tmp_path))) == 1
