"""Imports a module of `examples/` as its scripts do: `examples/` on `sys.path`.

The scripts import their sibling modules (`import synthetic_translation`), so a
test imports them the same way, and a TFDS builder is registered once.
"""

import importlib
import pathlib
import sys

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def load(name):
    """Returns `examples/<name>.py` as the module `name`."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    return importlib.import_module(name)
