"""Griffe extension: Args entries that document several parameters at once.

Some keras_lth docstrings document parameters that share a meaning in one
entry, Keras-style (`prune_rate, strategy, block: As for LotteryTicket.`).
Griffe's Google parser reads one name per entry and warns that a parameter
"a, b" is not in the signature. This rewrites such an entry into one entry
per name, each with the shared text, before the docstring is parsed; every
other docstring problem is still reported.
"""

import re

import griffe

_SECTION = re.compile(r"^(\s*)(Args|Arguments|Parameters):\s*$")
_SHARED = re.compile(r"^(\s+)([A-Za-z_]\w*(?:,\s*[A-Za-z_]\w*)+):(.*)$")


def split_shared_entries(text):
    lines = text.split("\n")
    out = []
    section_indent = None
    i = 0
    while i < len(lines):
        line = lines[i]
        section = _SECTION.match(line)
        if section:
            section_indent = len(section.group(1))
            out.append(line)
            i += 1
            continue
        indent = len(line) - len(line.lstrip())
        if line.strip() and section_indent is not None and indent <= section_indent:
            section_indent = None  # The section ended.
        shared = _SHARED.match(line) if section_indent is not None else None
        if shared is None:
            out.append(line)
            i += 1
            continue
        entry_indent = len(shared.group(1))
        body = [shared.group(3)]
        i += 1
        while i < len(lines) and lines[i].strip():
            if len(lines[i]) - len(lines[i].lstrip()) <= entry_indent:
                break
            body.append("\n" + lines[i])
            i += 1
        for name in re.split(r",\s*", shared.group(2)):
            out.append(f"{shared.group(1)}{name}:{''.join(body)}")
    return "\n".join(out)


class SharedArgs(griffe.Extension):
    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None and "," in obj.docstring.value:
            obj.docstring.value = split_shared_entries(obj.docstring.value)
