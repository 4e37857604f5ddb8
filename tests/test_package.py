"""The package's shape: public API, module size, imports, `__all__`.

These hold the layout the README describes: pure pruning at the bottom,
masked layers and masking, the callbacks, then export, tuner and the CLI at
the edge; one concern per module; private names stay in their module.
"""

import ast
import importlib
import pathlib
import re
import subprocess
import sys

import pytest

import keras_lth

PACKAGE = pathlib.Path(keras_lth.__file__).resolve().parent
ROOT = PACKAGE.parent

#: "At most about 600 lines" per module.
MAX_LINES = 620


def _modules():
    """`{dotted name: path}` of every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_public(name):
    return not any(part.startswith("_") for part in name.split("."))


def _imports(name, path):
    """`[(imported module, names taken from it, line)]`, function bodies included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [alias.name for alias in node.names]
            # `from keras_lth import datasets` imports the submodule.
            submodules = [n for n in names if f"{base}.{n}" in MODULES]
            found += [(f"{base}.{n}", [], node.lineno) for n in submodules]
            rest = [n for n in names if n not in submodules]
            if rest:
                found.append((base, rest, node.lineno))
    return [(module, names, line) for module, names, line in found if module in MODULES]


def test_every_public_name_imports():
    for name in keras_lth.__all__:
        assert getattr(keras_lth, name) is not None, name
    assert sorted(keras_lth.__all__) == sorted(set(keras_lth.__all__))
    from keras_lth.export import export_litert  # noqa: F401  (kept importable)


def test_import_keras_lth_imports_no_keras():
    code = "import sys, keras_lth; print('keras' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False", out.stderr


def test_a_ticket_loads_after_a_plain_import(tmp_path):
    """`import keras` then `import keras_lth` registers the masked layers."""
    code = f"""
import keras
import keras_lth
keras.models.load_model({str(ROOT / "tests" / "data" / "ticket_float_masks.keras")!r})
print("loaded")
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert out.stdout.strip().endswith("loaded"), out.stderr[-2000:]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_are_small(name):
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if _is_public(n)))
def test_public_modules_declare_all(name):
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    targets = [
        target.id
        for node in tree.body
        if isinstance(node, (ast.Assign, ast.AnnAssign))
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    ]
    assert "__all__" in targets, f"{name} has no __all__"
    module = importlib.import_module(name)
    for exported in module.__all__:
        assert hasattr(module, exported), f"{name}.__all__ lists missing {exported}"


def test_no_module_uses_another_modules_private_names():
    offenders = []
    for name, path in MODULES.items():
        for module, names, line in _imports(name, path):
            for taken in names:
                if taken.startswith("_") and module != name:
                    offenders.append(f"{name}:{line} imports {module}.{taken}")
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    full = (
                        alias.name
                        if isinstance(node, ast.Import)
                        else f"{node.module}.{alias.name}"
                    )
                    if full in MODULES and full != name:
                        aliases[alias.asname or alias.name.split(".")[0]] = full
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and re.match(r"_[^_]", node.attr)
            ):
                offenders.append(
                    f"{name}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}"
                )
    assert not offenders, "\n".join(offenders)


def test_no_import_cycles():
    graph = {
        name: {module for module, _, _ in _imports(name, path) if module != name}
        for name, path in MODULES.items()
    }
    cycles = []
    state = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join([*trail[trail.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    # A package's __init__ re-exporting its own submodules is not a cycle of
    # concerns, but a submodule importing its package's __init__ back is.
    assert not cycles, "\n".join(cycles)


def _readme_names():
    """Dotted `lth.` / `keras_lth.` names used in the README's Python blocks."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    names = set()
    for block in blocks:
        for match in re.finditer(r"\b(?:lth|keras_lth)((?:\.[A-Za-z_]\w*)+)", block):
            names.add(match.group(1)[1:])
    return sorted(names)


@pytest.mark.parametrize("dotted", _readme_names())
def test_the_readmes_examples_name_real_things(dotted):
    value = keras_lth
    for part in dotted.split("."):
        if isinstance(value, type(keras_lth)) and not hasattr(value, part):
            value = importlib.import_module(f"{value.__name__}.{part}")
        else:
            value = getattr(value, part)
    assert value is not None
