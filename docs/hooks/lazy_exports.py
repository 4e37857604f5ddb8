"""Griffe extension: the public names `keras_lth` loads on first use.

`keras_lth/__init__.py` imports nothing at import time: a module
`__getattr__` loads each public name from the module `_EXPORTS` names, so
that `import keras_lth` does not import Keras. Static analysis sees neither
the names nor `__all__` (`sorted(_EXPORTS)`). This reads `_EXPORTS` from the
source and adds each name to the `keras_lth` module as an alias of the
object it loads, with `__all__` set to match, so the API reference documents
`keras_lth.mask_model` and the rest under the names scripts use.
"""

import ast

import griffe


class LazyExports(griffe.Extension):
    def on_module_members(self, *, mod, **kwargs):
        if mod.path != "keras_lth" or "_EXPORTS" not in mod.members:
            return
        exports = ast.literal_eval(str(mod.members["_EXPORTS"].value))
        for name, module in exports.items():
            target = module if module == f"keras_lth.{name}" else f"{module}.{name}"
            mod.set_member(name, griffe.Alias(name, target, parent=mod))
        mod.exports = sorted(exports)
