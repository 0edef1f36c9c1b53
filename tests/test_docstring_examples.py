"""The `Example:` in every public docstring runs and prints what it shows."""

import doctest

import keras
import numpy as np
import pytest

import keras_transformer_layers as ktl

PUBLIC = sorted(set(ktl.__all__) - {"__version__"})


@pytest.mark.parametrize("name", PUBLIC)
def test_docstring_example_runs(name):
    obj = getattr(ktl, name)
    finder = doctest.DocTestFinder(recurse=False)
    tests = finder.find(
        obj, name, globs={"np": np, "keras": keras, "keras_transformer_layers": ktl}
    )
    assert tests and tests[0].examples, f"{name} has no doctest example"
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
