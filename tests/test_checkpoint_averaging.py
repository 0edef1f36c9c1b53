"""`training.CheckpointAveraging`: the mean of the last k weight snapshots (section 6.1)."""

import keras
import numpy as np
import pytest

from keras_transformer_layers.training import CheckpointAveraging

pytestmark = pytest.mark.backend_neutral

BATCHES_PER_EPOCH = 4


class Counter(keras.layers.Layer):
    """Identity with an int32 variable that the `Recorder` callback sets."""

    def build(self, inputs_shape):
        self.count = self.add_weight(
            shape=(), dtype="int32", initializer="zeros", trainable=False, name="count"
        )

    def call(self, inputs):
        return inputs


class Recorder(keras.callbacks.Callback):
    """Sets the int counter to the batches seen; records the weights after every batch."""

    def __init__(self):
        super().__init__()
        self.snapshots = {}  # batches seen -> weights

    def on_train_batch_end(self, batch, logs=None):
        seen = len(self.snapshots) + 1
        self.model.get_layer("counter").count.assign(seen)
        self.snapshots[seen] = [keras.ops.convert_to_numpy(v).copy() for v in self.model.weights]


def _fit(averaging, epochs):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(4),
            keras.layers.BatchNormalization(),  # float non-trainable moving statistics
            Counter(name="counter"),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8 * BATCHES_PER_EPOCH, 3)).astype("float32")
    y = rng.normal(size=(8 * BATCHES_PER_EPOCH, 1)).astype("float32")
    recorder = Recorder()
    # The recorder runs first, so both callbacks see the same weights.
    model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, callbacks=[recorder, averaging])
    return model, recorder


def _expected(snapshots):
    """NumPy mean (float64, rounded to float32) of floats; latest value of ints."""
    expected = []
    for values in zip(*snapshots, strict=True):
        if values[-1].dtype == np.float32:
            expected.append(np.mean(np.stack(values).astype(np.float64), axis=0).astype(np.float32))
        else:
            expected.append(values[-1])
    return expected


def _assert_model_holds(model, expected):
    weights = [keras.ops.convert_to_numpy(v) for v in model.weights]
    assert len(weights) == len(expected)
    for value, want in zip(weights, expected, strict=True):
        assert value.dtype == want.dtype
        np.testing.assert_array_equal(value, want)


def test_epoch_snapshots_average_equals_the_numpy_mean():
    averaging = CheckpointAveraging(num_checkpoints=3)
    model, recorder = _fit(averaging, epochs=5)
    assert len(averaging.checkpoints) == 3
    # The ends of epochs 3, 4 and 5.
    epoch_ends = [recorder.snapshots[e * BATCHES_PER_EPOCH] for e in (3, 4, 5)]
    expected = _expected(epoch_ends)
    _assert_model_holds(model, expected)
    # The average is not any one snapshot: the test can tell them apart.
    kernel = [v.path for v in model.weights].index(model.layers[0].kernel.path)
    assert not np.array_equal(expected[kernel], epoch_ends[-1][kernel])
    # Non-trainable floats (moving statistics) are averaged too...
    moving = [v.path for v in model.weights].index(model.layers[1].moving_mean.path)
    assert not np.array_equal(expected[moving], epoch_ends[-1][moving])
    # ...and the int counter keeps its final value, 5 epochs x 4 batches.
    assert int(keras.ops.convert_to_numpy(model.get_layer("counter").count)) == 20
    # The final, non-averaged weights stay available.
    for kept, recorded in zip(averaging.checkpoints[-1], epoch_ends[-1], strict=True):
        np.testing.assert_array_equal(kept, recorded)


def test_step_snapshots_include_the_final_weights():
    # 3 epochs x 4 batches, a snapshot every 5 batches: at 5 and 10, then at the end (12).
    averaging = CheckpointAveraging(num_checkpoints=5, save_freq=5)
    model, recorder = _fit(averaging, epochs=3)
    assert len(recorder.snapshots) == 12
    assert len(averaging.checkpoints) == 3  # fewer than 5 taken: those are averaged
    _assert_model_holds(model, _expected([recorder.snapshots[b] for b in (5, 10, 12)]))
    assert int(keras.ops.convert_to_numpy(model.get_layer("counter").count)) == 12


def test_verbose_says_what_was_averaged(capsys):
    _fit(CheckpointAveraging(num_checkpoints=2, verbose=1), epochs=3)
    assert "average of the last 2 checkpoints" in capsys.readouterr().out


def test_config_round_trip():
    averaging = CheckpointAveraging(num_checkpoints=4, save_freq=100, verbose=1)
    config = averaging.get_config()
    assert config == {"num_checkpoints": 4, "save_freq": 100, "verbose": 1}
    assert CheckpointAveraging(**config).get_config() == config


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"num_checkpoints": 0},
            r"`num_checkpoints` must be a positive int.*Received: "
            r"num_checkpoints=0",
        ),
        ({"num_checkpoints": 2.0}, r"`num_checkpoints`.*Received: num_checkpoints=2.0"),
        (
            {"save_freq": "batch"},
            r"`save_freq` must be \"epoch\" or a positive int.*"
            r"Received: save_freq='batch'",
        ),
        ({"save_freq": 0}, r"`save_freq`.*Received: save_freq=0"),
        ({"save_freq": float("nan")}, r"`save_freq`.*Received: save_freq=nan"),
        ({"verbose": 2}, r"`verbose` must be 0 or 1. Received: verbose=2"),
    ],
)
def test_bad_arguments_are_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CheckpointAveraging(**kwargs)


def test_average_before_any_snapshot_is_a_value_error():
    with pytest.raises(ValueError, match=r"`averaged_weights` needs at least one snapshot"):
        CheckpointAveraging().averaged_weights()


def test_docstring_example_runs():
    import doctest

    import keras_transformer_layers as ktl

    tests = doctest.DocTestFinder(recurse=False).find(
        CheckpointAveraging,
        "CheckpointAveraging",
        globs={"np": np, "keras": keras, "keras_transformer_layers": ktl},
    )
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).attempted > 0
    assert runner.summarize(verbose=False).failed == 0
