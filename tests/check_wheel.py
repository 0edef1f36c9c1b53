"""Checks the built distributions and the wheel installed without extras.

Run by `make test-wheel` with the Python of a fresh virtual environment into
which only the wheel (and so only its required dependencies) was installed:

    python tests/check_wheel.py DIST_DIR

from a working directory outside the repository's root, so that
`import keras_transformer_layers` finds the installed copy. Exits non-zero
with a message on the first failed check.
"""

import importlib.metadata
import importlib.util
import math
import os
import pathlib
import sys
import tarfile
import zipfile

PACKAGE = "keras_transformer_layers"
DISTRIBUTION = "keras-transformer-layers"
# Top-level folders of the repository that must stay out of both archives.
NOT_SHIPPED = ("tests", "examples", "benchmarks", "docs")


def fail(message):
    sys.exit(f"check_wheel: {message}")


def only_file(dist_dir, pattern):
    matches = sorted(dist_dir.glob(pattern))
    if len(matches) != 1:
        fail(f"expected one {pattern} in {dist_dir}, found {[m.name for m in matches]}")
    return matches[0]


def check_archives(dist_dir):
    with zipfile.ZipFile(only_file(dist_dir, "*.whl")) as wheel:
        wheel_names = wheel.namelist()
    with tarfile.open(only_file(dist_dir, "*.tar.gz")) as sdist:
        # Strip the leading `keras_transformer_layers-<version>/`.
        sdist_names = [name.partition("/")[2] for name in sdist.getnames()]
    for archive, names in (("wheel", wheel_names), ("sdist", sdist_names)):
        shipped = sorted({name.split("/")[0] for name in names} & set(NOT_SHIPPED))
        if shipped:
            fail(f"the {archive} contains {shipped}")
    if f"{PACKAGE}/__init__.py" not in wheel_names:
        fail(f"the wheel lacks {PACKAGE}/__init__.py")
    if not any(name.endswith(".dist-info/licenses/LICENSE") for name in wheel_names):
        fail("the wheel lacks its LICENSE")
    if "LICENSE" not in sdist_names:
        fail("the sdist lacks its LICENSE")


def check_installed_without_extras():
    import keras_transformer_layers as ktl

    location = pathlib.Path(ktl.__file__).resolve()
    if pathlib.Path(sys.prefix).resolve() not in location.parents:
        fail(f"imported {location}, not the copy installed in {sys.prefix}")
    if importlib.metadata.version(DISTRIBUTION) != ktl.__version__:
        fail("the installed metadata and `__version__` differ")
    if importlib.metadata.metadata(DISTRIBUTION)["License-Expression"] != "Apache-2.0":
        fail("the metadata lacks `License-Expression: Apache-2.0`")
    for extra_module in ("tensorflow_datasets", "matplotlib", "ai_edge_litert", "sentencepiece"):
        if importlib.util.find_spec(extra_module) is not None:
            fail(f"{extra_module} is installed, but no extra was requested")
    # A missing extra names the command that installs it.
    try:
        import keras_transformer_layers.data  # noqa: F401
    except ModuleNotFoundError as error:
        if 'pip install ".[data]"' not in str(error):
            fail(f"the `data` import error does not say how to install the extra: {error}")
    else:
        fail("`keras_transformer_layers.data` imported without the `data` extra")


def check_positional_encoding():
    import keras
    import numpy as np

    import keras_transformer_layers as ktl

    length, dim, start = 5, 6, 3
    layer = ktl.PositionalEncoding()
    inputs = np.full((2, length, dim), 0.5, "float32")
    outputs = keras.ops.convert_to_numpy(layer(inputs, start_index=start))
    # Section 3.5: PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(same).
    expected = np.empty((length, dim))
    for row in range(length):
        for channel in range(dim):
            angle = (start + row) / 10000 ** (2 * (channel // 2) / dim)
            expected[row, channel] = math.sin(angle) if channel % 2 == 0 else math.cos(angle)
    error = np.max(np.abs(outputs - 0.5 - expected[None]))
    if not error < 1e-5:
        fail(f"PositionalEncoding differs from the sinusoid formula by {error}")


def main():
    if len(sys.argv) != 2:
        fail("usage: python tests/check_wheel.py DIST_DIR")
    check_archives(pathlib.Path(sys.argv[1]))
    if pathlib.Path(os.getcwd(), PACKAGE).is_dir():
        fail("run it from outside the repository's root")
    check_installed_without_extras()
    check_positional_encoding()
    print("check_wheel: archives, install without extras and PositionalEncoding are fine")


if __name__ == "__main__":
    main()
