import ast
import functools
import gc
import importlib.util
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402

# The modules of the optional extras of pyproject.toml (and of the `dev` tools
# some tests compare against), by the extra that installs them.
EXTRA_OF_MODULE = {
    "tensorflow_datasets": "data",
    "ai_edge_litert": "litert",
    "matplotlib": "plot",
    "sentencepiece": "subword",
    "tensorflow_text": "subword",
    "keras_hub": "dev",
    "sacrebleu": "dev",
}

# Set by `make test-tensorflow`: its environment has every extra, so a test that
# would skip for a missing one fails instead and no skip can hide a failure.
REQUIRE_EXTRAS = os.environ.get("KTL_REQUIRE_EXTRAS") == "1"


@functools.cache
def declares_backend_neutral(path):
    """Whether the test file's module-level `pytestmark` holds `pytest.mark.backend_neutral`.

    Read from the source: on a backend other than TensorFlow the other files
    import TensorFlow at module level and cannot even be imported.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(isinstance(target, ast.Name) and target.id == "pytestmark" for target in targets):
            return any(
                isinstance(part, ast.Attribute) and part.attr == "backend_neutral"
                for part in ast.walk(node.value)
            )
    return False


def pytest_configure(config):
    if not REQUIRE_EXTRAS:
        return
    missing = sorted(
        f"`{extra}` ({module})"
        for module, extra in EXTRA_OF_MODULE.items()
        if importlib.util.find_spec(module) is None
    )
    if missing:
        raise pytest.UsageError(
            f"KTL_REQUIRE_EXTRAS=1, but these extras are not installed: {', '.join(missing)}. "
            "Install them with pip install -e '.[dev]'."
        )


def pytest_ignore_collect(collection_path, config):
    """On a backend other than TensorFlow, skips the files that are not backend-neutral."""
    if keras.config.backend() == "tensorflow" or not collection_path.match("test_*.py"):
        return None
    return True if not declares_backend_neutral(collection_path) else None


def pytest_collection_modifyitems(config, items):
    """Refuses a `backend_neutral` mark that the JAX run would not see.

    Only a module-level `pytestmark` lets `make test-jax` collect a file (see
    `pytest_ignore_collect`); a mark on single tests of another file would be
    selected by `-m backend_neutral` and never run.
    """
    for item in items:
        if item.get_closest_marker("backend_neutral") and not declares_backend_neutral(item.path):
            raise pytest.UsageError(
                f"{item.nodeid} is marked `backend_neutral`, but its file has no module-level "
                "`pytestmark = pytest.mark.backend_neutral`: the JAX run would not collect it."
            )


def _missing_extra(error):
    """`(extra, module)` if `error`, or an error it was raised from, is a missing extra's module."""
    while error is not None:
        if isinstance(error, ModuleNotFoundError) and error.name:
            extra = EXTRA_OF_MODULE.get(error.name.partition(".")[0])
            if extra is not None:
                return extra, error.name
        error = error.__cause__
    return None


def _skip_for_missing_extra(error):
    """Skips the test (or the file) if `error` is a missing extra, unless every extra is required."""
    found = _missing_extra(error)
    if found is None or REQUIRE_EXTRAS:
        return
    extra, module = found
    pytest.skip(
        f"needs the `{extra}` extra ({module} is not installed): pip install -e '.[{extra}]'",
        allow_module_level=True,
    )


class _Module(pytest.Module):
    """A test file whose import of a missing extra skips it with the reason."""

    def collect(self):
        try:
            return super().collect()
        except self.CollectError as error:
            _skip_for_missing_extra(error.__cause__)
            raise


def pytest_pycollect_makemodule(module_path, parent):
    return _Module.from_parent(parent, path=module_path)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    try:
        return (yield)
    except Exception as error:
        _skip_for_missing_extra(error)
        raise


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    try:
        return (yield)
    except Exception as error:
        _skip_for_missing_extra(error)
        raise


@pytest.fixture(autouse=True)
def _float32_policy_and_seed():
    """Every test starts in float32 with seed 0, whatever the previous test set.

    The objects that exist before the test are frozen for its duration
    (`gc.freeze`): Keras calls `gc.collect()` once per layer in
    `model.quantize("int8")`, and each full collection would walk every
    object TensorFlow and earlier tests created (0.3-0.5 s each). Objects the
    test creates are collected as usual.
    """
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(0)
    gc.freeze()
    yield
    gc.unfreeze()
    keras.config.set_dtype_policy("float32")
