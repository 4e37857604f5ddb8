"""MkDocs hook: shows the docstrings' doctest examples as code.

keras_lth's docstrings give examples as doctests (`>>> call()` then its
output), not inside a fence. Markdown would read `>>>` as nested quotes and
a line such as `['fc1', 'fc2']` after a bracketed call as a reference link.
This adds a Markdown preprocessor, to the pages and to the API reference
that mkdocstrings renders with the same extensions, that puts each run of
doctest lines (a `>>>` line, its `...` continuations and its output, up to a
blank line) in a ```pycon fence. Fenced blocks are left as they are.
"""

import re

from markdown import Extension
from markdown.preprocessors import Preprocessor
from mkdocs.plugins import event_priority

_FENCE = re.compile(r"^\s*(```|~~~)")
_PROMPT = re.compile(r"^(\s*)>>> ?")


class _DoctestFences(Preprocessor):
    def run(self, lines):
        out = []
        in_fence = False
        i = 0
        while i < len(lines):
            line = lines[i]
            if _FENCE.match(line):
                in_fence = not in_fence
            prompt = None if in_fence else _PROMPT.match(line)
            if prompt is None:
                out.append(line)
                i += 1
                continue
            indent = prompt.group(1)
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i][len(indent) :])
                i += 1
            if out and out[-1].strip():
                out.append("")
            out += [
                f"{indent}```pycon",
                *(indent + b for b in block),
                f"{indent}```",
                "",
            ]
        return out


class DoctestFencesExtension(Extension):
    def extendMarkdown(self, md):  # noqa: N802 - Markdown's API.
        # Before the fenced-code preprocessors (SuperFences: 38).
        md.preprocessors.register(_DoctestFences(md), "doctest_fences", 40)


@event_priority(100)  # Before mkdocstrings takes the list of extensions.
def on_config(config):
    config.markdown_extensions.append(DoctestFencesExtension())
    return config
