"""MkDocs hook: links in the repository's Markdown files included in docs/.

docs/benchmarks.md and docs/changelog.md include BENCHMARKS.md and
CHANGELOG.md from the repository's root (`--8<--`, pymdownx.snippets), whose
links are relative to the root: `docs/deploy.png`, `README.md`. This adds a
Markdown preprocessor that runs after the snippets are inserted and, on those
pages only, rewrites such links to their place in the site.
"""

import re

from markdown import Extension
from markdown.preprocessors import Preprocessor
from mkdocs.plugins import event_priority

#: Pages of docs/ that include a file of the repository's root.
INCLUDING_PAGES = ("benchmarks.md", "changelog.md")
#: Root-relative link targets and their place relative to docs/.
TARGETS = {
    "BENCHMARKS.md": "benchmarks.md",
    "CHANGELOG.md": "changelog.md",
    "README.md": "index.md",
}
_LINK = re.compile(r"(\]\()([^)\s]+)")
_current = {"page": None}


def _rewrite(target):
    if target.startswith("docs/"):
        return target[len("docs/") :]
    path, _, anchor = target.partition("#")
    if path in TARGETS:
        return TARGETS[path] + (f"#{anchor}" if anchor else "")
    return target


class _RootLinks(Preprocessor):
    def run(self, lines):
        if _current["page"] not in INCLUDING_PAGES:
            return lines
        return [
            _LINK.sub(lambda m: m.group(1) + _rewrite(m.group(2)), line)
            for line in lines
        ]


class RootLinksExtension(Extension):
    def extendMarkdown(self, md):  # noqa: N802 - Markdown's API.
        # After pymdownx.snippets (32) has inserted the included file.
        md.preprocessors.register(_RootLinks(md), "root_links", 31)


@event_priority(100)
def on_config(config):
    config.markdown_extensions.append(RootLinksExtension())
    return config


def on_page_markdown(markdown, page, **kwargs):
    _current["page"] = page.file.src_uri
    return markdown
