"""The documentation's code runs: the Markdown code blocks and the docstrings.

Code blocks of README.md, the other top-level Markdown files and docs/ follow
pytest-markdown-docs's conventions and are read with its parser (the plugin's
own `pytest --markdown-docs README.md docs` runs the same code, though in the
current directory and with a continuation running its chain again):

- every ```python block runs;
- a ```python continuation block runs after the blocks before it, with their
  names (a block and its continuations are one test here, run once);
- a ```python notest block does not run, and must be named in
  `LONG_RUNNING`, so that no block stops running unnoticed.

Docstring examples are `>>>` doctests, run with `keras`, `keras_lth` and `np`
in their namespace besides the module's own names. A docstring's ```python
fence is an illustration, with names it does not define, and is not run.

Every chain and every module's doctests run in a temporary working directory
(what they write stays out of the repository), after `tests/conftest.py`'s
fresh Keras session and seed. They run on TensorFlow only, not in the `core`
passes on JAX and PyTorch: printed tensors differ between backends.
"""

import dataclasses
import doctest
import importlib
import inspect
import io
import pathlib
import traceback

import keras
import numpy as np
import pytest
from markdown_it import MarkdownIt
from pytest_markdown_docs.plugin import extract_fence_tests

import keras_lth

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "keras_lth"

pytestmark = pytest.mark.docs

#: The ```python notest blocks, as (file, first line of code). A block left
#: out of the suite is named here, so the list is the one place to review
#: what the suite does not run.
LONG_RUNNING = []

#: Docstring examples known to fail, by doctest name, with why. A name here
#: whose examples pass fails the test too: remove it then.
DOCTEST_KNOWN_FAILURES = {}

#: Names every docstring example may use without importing them.
DOCTEST_GLOBALS = {"keras": keras, "keras_lth": keras_lth, "np": np}
DOCTEST_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
PYTHON = ("py", "python", "python3")


@dataclasses.dataclass(frozen=True)
class Chain:
    """A ```python block and the continuation blocks after it."""

    path: pathlib.Path
    lines: tuple  # Where each block's code starts, 1-based.
    definition: object  # The last block's, whose source holds the chain.

    def __str__(self):
        return f"{self.path.relative_to(ROOT).as_posix()}:{self.lines[0]}"


def _markdown_files():
    return sorted(ROOT.glob("*.md")) + sorted((ROOT / "docs").rglob("*.md"))


def _python_fences(path):
    """`[(first code line, info words, code)]` of the file's Python fences."""
    tokens = MarkdownIt("commonmark").parse(path.read_text(encoding="utf-8"))
    fences = []
    for token in tokens:
        words = token.info.split()
        if token.type == "fence" and token.map and words and words[0] in PYTHON:
            fences.append((token.map[0] + 1, set(words[1:]), token.content))
    return fences


def _chains(path):
    """The file's chains, from the blocks pytest-markdown-docs would run."""
    fences = _python_fences(path)
    continues = {line: "continuation" in words for line, words, _ in fences}
    text = path.read_text(encoding="utf-8")
    chains = []
    for definition in extract_fence_tests(MarkdownIt("commonmark"), text, 0, path):
        if chains and continues[definition.start_line]:
            last = chains.pop()
            chains.append(Chain(path, (*last.lines, definition.start_line), definition))
        else:
            chains.append(Chain(path, (definition.start_line,), definition))
    return chains


def _not_tested():
    found = []
    for path in _markdown_files():
        for _, words, code in _python_fences(path):
            if "notest" in words:
                first = next((line for line in code.splitlines() if line.strip()), "")
                found.append((path.relative_to(ROOT).as_posix(), first.strip()))
    return found


def _doctest_modules():
    """Dotted names of the package's modules with `>>>` examples."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if ">>>" in path.read_text(encoding="utf-8"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


CHAINS = [chain for path in _markdown_files() for chain in _chains(path)]


def _repository_entries():
    return set(ROOT.iterdir()) | set((ROOT / "docs").rglob("*"))


@pytest.mark.parametrize("chain", CHAINS, ids=str)
def test_code_blocks_run(chain, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = _repository_entries()
    code = compile(chain.definition.source, str(chain.path), "exec")
    try:
        exec(code, {"__name__": "fence"})  # As pytest-markdown-docs runs a block.
        failure = None
    except Exception as error:  # Its traceback from the block down, lines cited.
        trace = traceback.format_exception(
            type(error), error, error.__traceback__.tb_next
        )
        failure = f"A block of {chain} failed:\n{''.join(trace)}"
    if failure:
        pytest.fail(failure, pytrace=False)
    written = sorted(map(str, _repository_entries() - before))
    assert not written, f"The blocks wrote into the repository: {written}"


def test_long_running_blocks_are_named():
    assert CHAINS, "No ```python block found in README.md or docs/."
    found = _not_tested()
    assert sorted(found) == sorted(LONG_RUNNING), (
        "The ```python notest blocks and LONG_RUNNING differ. "
        f"Not named: {sorted(set(found) - set(LONG_RUNNING))}; "
        f"named but not a notest block: {sorted(set(LONG_RUNNING) - set(found))}"
    )


@pytest.mark.parametrize("name", _doctest_modules())
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=DOCTEST_FLAGS)
    tests = doctest.DocTestFinder().find(module, name, extraglobs=DOCTEST_GLOBALS)
    tests = [test for test in tests if test.examples]
    assert tests, f"{name} has `>>>` but no docstring example."
    failed = {}
    for test in tests:
        report = io.StringIO()
        if runner.run(test, out=report.write).failed:
            failed[test.name] = report.getvalue()
    known = {test.name for test in tests} & DOCTEST_KNOWN_FAILURES.keys()
    unexpected = [failed[key] for key in sorted(failed.keys() - known)]
    if unexpected:
        pytest.fail("".join(unexpected), pytrace=False)
    fixed = sorted(known - failed.keys())
    assert not fixed, f"Passing now, remove from DOCTEST_KNOWN_FAILURES: {fixed}"


def _public_modules():
    """`keras_lth.x.y` for every module and package without a private part."""
    package = ROOT / "keras_lth"
    names = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if not any(part.startswith("_") for part in parts):
            names.append(".".join(parts))
    return names


def test_api_reference_documents_every_public_module():
    # The API pages are written by hand (one `::: module` line each), so a new
    # module would otherwise be missing from the site without a warning.
    documented = set()
    for page in (ROOT / "docs" / "api").glob("*.md"):
        for line in page.read_text(encoding="utf-8").splitlines():
            if line.startswith("::: "):
                documented.add(line[4:].strip())
    missing = sorted(set(_public_modules()) - documented)
    assert not missing, f"no `::: module` line in docs/api/ for {missing}"


def test_every_public_name_has_a_docstring():
    # The API reference shows a name without a docstring as an empty entry,
    # which `mkdocs build --strict` does not catch.
    undocumented = []
    for name in _public_modules():
        module = importlib.import_module(name)
        if not (module.__doc__ or "").strip():
            undocumented.append(name)
        for public in getattr(module, "__all__", ()):
            value = getattr(module, public)
            documentable = inspect.isclass(value) or inspect.isfunction(value)
            if documentable and not (value.__doc__ or "").strip():
                undocumented.append(f"{name}.{public}")
    assert not undocumented, f"no docstring: {undocumented}"
