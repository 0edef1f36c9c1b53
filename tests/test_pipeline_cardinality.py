"""`make_translation_dataset` knows its number of batches, so `model.fit` does too."""

import math
import warnings

import numpy as np
import pytest
import tensorflow as tf

import keras_transformer_layers as ktl
from keras_transformer_layers.data import TextTokenizer
from keras_transformer_layers.data import make_translation_dataset

SOURCE = TextTokenizer(vocabulary=["a", "b"])
TARGET = TextTokenizer(vocabulary=["x", "y", "z"])
_LENGTHS = [1, 9, 2, 10, 1, 9, 2, 10, 3, 3, 7, 12, 5]
_RAN_OUT = "ran out of data"


def _pairs(lengths):
    sources = ["a" * n for n in lengths]
    targets = ["x" * (n % 4 + 1) for n in lengths]
    return tf.data.Dataset.from_tensor_slices((sources, targets))


def _counted(dataset):
    return sum(1 for _ in dataset.as_numpy_iterator())


def _expected_batches(lengths, batch_size, boundaries):
    """Per bucket ceil(pairs / batch_size); a pair's length is its longer side + 2 ids."""
    buckets = {}
    for n in lengths:
        length = max(n, n % 4 + 1) + 2  # the source or decoder input, [START] and [END] in
        bucket = sum(boundary <= length for boundary in boundaries)
        buckets[bucket] = buckets.get(bucket, 0) + 1
    return sum(math.ceil(count / batch_size) for count in buckets.values())


@pytest.mark.parametrize(
    "batch_size, boundaries, shuffle",
    [(4, None, None), (3, [6, 9], 8), (2, [5], None)],
)
def test_cardinality_is_the_counted_number_of_batches(batch_size, boundaries, shuffle):
    dataset = make_translation_dataset(
        _pairs(_LENGTHS),
        SOURCE,
        TARGET,
        batch_size=batch_size,
        bucket_boundaries=boundaries,
        shuffle_buffer_size=shuffle,
        seed=1,
    )
    expected = _expected_batches(_LENGTHS, batch_size, boundaries or [])
    assert int(dataset.cardinality()) == expected
    for _ in range(2):  # every pass, reshuffled or not
        assert _counted(dataset) == expected


def test_cardinality_counts_only_the_pairs_kept():
    # sequence_length=6 drops the sources of 5, 7, 9, 10 and 12 characters (7 of the 13 pairs).
    dataset = make_translation_dataset(
        _pairs(_LENGTHS), SOURCE, TARGET, batch_size=3, sequence_length=6
    )
    kept = [n for n in _LENGTHS if n + 2 <= 6]
    assert len(kept) == 6
    assert int(dataset.cardinality()) == math.ceil(len(kept) / 3) == _counted(dataset)


def test_without_cache_the_number_of_batches_stays_unknown():
    dataset = make_translation_dataset(_pairs(_LENGTHS), SOURCE, TARGET, batch_size=4, cache=False)
    assert int(dataset.cardinality()) == tf.data.UNKNOWN_CARDINALITY
    assert _counted(dataset) == math.ceil(len(_LENGTHS) / 4)


def _fit_warnings(dataset):
    model = ktl.build_transformer(
        SOURCE.vocabulary_size,
        TARGET.vocabulary_size,
        num_layers=1,
        model_dim=8,
        num_heads=2,
        intermediate_dim=16,
        dropout=0.0,
    )
    # Eager: the test is about how `fit` reads the dataset, not about speed.
    model.compile(
        optimizer="adam",
        loss=ktl.training.MaskedSparseCategoricalCrossentropy(),
        run_eagerly=True,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(dataset, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    return [str(w.message) for w in caught]


def test_fit_does_not_run_out_of_data():
    pairs = _pairs(_LENGTHS[:6])
    cached = make_translation_dataset(pairs, SOURCE, TARGET, batch_size=4)
    assert not [m for m in _fit_warnings(cached) if _RAN_OUT in m]
    # The warning this prevents: Keras gives it when the length is unknown.
    uncached = make_translation_dataset(pairs, SOURCE, TARGET, batch_size=4, cache=False)
    assert [m for m in _fit_warnings(uncached) if _RAN_OUT in m]
