"""A Griffe extension for `make docs`: shows docstring doctests as Python code.

The package's docstrings put their doctests (`>>>` lines and the output below them, up to
the next blank line) straight under `Example:`, as `tests/test_docstring_examples.py` runs
them. Markdown would read `>>>` as nested quotes and `[...]` output as links, so this
extension fences each doctest run as a `pycon` code block before mkdocstrings renders it.
"""

import griffe


def fence_doctests(text):
    """Returns `text` with every run of doctest lines inside a fenced `pycon` block."""
    lines = []
    in_doctest = False
    for line in text.splitlines():
        if not in_doctest and line.lstrip().startswith(">>>"):
            indent = line[: len(line) - len(line.lstrip())]
            lines.append(f"{indent}```pycon")
            in_doctest = True
        elif in_doctest and not line.strip():
            lines.append(f"{indent}```")
            in_doctest = False
        lines.append(line)
    if in_doctest:
        lines.append(f"{indent}```")
    return "\n".join(lines)


class DoctestBlocks(griffe.Extension):
    """Fences the doctests of every docstring Griffe loads."""

    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None:
            obj.docstring.value = fence_doctests(obj.docstring.value)
