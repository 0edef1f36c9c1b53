import gc
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402

# The lines that mark a test file as backend-neutral (see pyproject.toml):
# `make test` runs the first kind on JAX too, the second on TensorFlow only.
BACKEND_NEUTRAL = (
    "pytestmark = pytest.mark.backend_neutral\n",
    "pytestmark = pytest.mark.backend_neutral_by_hand\n",
)


def pytest_ignore_collect(collection_path, config):
    """On a backend other than TensorFlow, skips the files that are not backend-neutral.

    Those files import TensorFlow at module level, so they are not even imported
    (the JAX run of `make test` has no TensorFlow installed).
    """
    if keras.config.backend() == "tensorflow" or not collection_path.match("test_*.py"):
        return None
    text = collection_path.read_text(encoding="utf-8")
    if not any(line in text for line in BACKEND_NEUTRAL):
        return True
    return None


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
