"""Every ```python block of README.md and docs/ runs, each as a script of its own.

The rule for the documentation: a ```python block is a complete program (its own imports,
its own small data) and shares nothing with the blocks before it; shell commands go in
```bash blocks and printed output in ```text blocks, which are not run. Each block is written
to a script and run as `__main__` in a fresh namespace, from a temporary working directory, so
the files it writes (models, exports) land there. Pages added to docs/ later are picked up by
the glob.
"""

import pathlib
import re
import runpy

import keras
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("**/*.md")])
# An opening fence with its language; closing fences have none.
FENCE = re.compile(r"^```(\S*)\s*$")
LANGUAGES = {"python", "bash", "text"}


def fenced_blocks(path):
    """Yields `(language, first line number, source)` for every fenced block of `path`."""
    lines = path.read_text(encoding="utf-8").splitlines()
    language, start, body = None, 0, []
    for number, line in enumerate(lines, start=1):
        match = FENCE.match(line)
        if match is None:
            if language is not None:
                body.append(line)
        elif language is None:
            language, start, body = match.group(1), number + 1, []
        else:
            yield language, start, "\n".join(body) + "\n"
            language = None
    if language is not None:
        raise ValueError(f"{path.name}: the block opened on line {start - 1} is never closed")


def python_blocks():
    for path in PAGES:
        for language, start, source in fenced_blocks(path):
            if language == "python":
                name = f"{path.relative_to(ROOT)}:{start}"
                yield pytest.param(name, source, id=name)


BLOCKS = list(python_blocks())


def test_the_pages_have_python_blocks():
    names = [block.values[0] for block in BLOCKS]
    assert any(name.startswith("README.md:") for name in names)
    assert any(name.startswith("docs/") for name in names)


@pytest.mark.parametrize("path", PAGES, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_block_names_its_language(path):
    """An unlabelled or mislabelled block would escape the run below."""
    for language, start, _ in fenced_blocks(path):
        assert language in LANGUAGES, (
            f"{path.name}:{start - 1}: fence language {language!r}, expected one of "
            f"{sorted(LANGUAGES)}"
        )


def test_readme_links_point_into_the_repository():
    """MkDocs checks the links of docs/ (strict mode); nothing checks the README's but this."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    assert "docs/cross_attention.png" in targets
    for target in targets:
        assert "://" not in target, f"README.md links outside the repository: {target}"
        assert (ROOT / target).resolve().is_relative_to(ROOT), target
        assert (ROOT / target).is_file(), f"README.md links to a missing file: {target}"


def test_fenced_blocks_reads_languages_lines_and_bodies(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("Text\n```python\nx = 1\n\ny = 2\n```\n```bash\nls\n```\n```\nbare\n```\n")
    assert list(fenced_blocks(page)) == [
        ("python", 3, "x = 1\n\ny = 2\n"),
        ("bash", 8, "ls\n"),
        ("", 11, "bare\n"),
    ]
    page.write_text("```python\nx = 1\n")
    with pytest.raises(ValueError, match="never closed"):
        list(fenced_blocks(page))


def test_make_docs_fences_docstring_doctests():
    """`make docs` shows the docstrings' doctests as code (tools/griffe_doctest_blocks.py)."""
    tool = runpy.run_path(str(ROOT / "tools" / "griffe_doctest_blocks.py"))
    docstring = (
        "Adds one.\n\nExample:\n\n>>> add_one(\n...     1)\n2\n>>> [add_one(0)]\n[1]\n\n"
        "Text after.\n    >>> indented()\n    None"
    )
    assert tool["fence_doctests"](docstring) == (
        "Adds one.\n\nExample:\n\n```pycon\n>>> add_one(\n...     1)\n2\n>>> [add_one(0)]\n[1]\n"
        "```\n\nText after.\n    ```pycon\n    >>> indented()\n    None\n    ```"
    )
    assert (
        tool["fence_doctests"]("No doctest here.\n[a link](b)") == "No doctest here.\n[a link](b)"
    )


@pytest.mark.parametrize("name, source", BLOCKS)
def test_python_block_runs(name, source, tmp_path, monkeypatch):
    # The script is named after its page and line, so a traceback points at the block.
    script = tmp_path / (re.sub(r"\W", "_", name) + ".py")
    script.write_text(source, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        keras.backend.clear_session()
