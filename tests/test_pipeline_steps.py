"""The pipeline's steps, composed, against a NumPy reference of the packing rule.

The reference below is written from the documented rule alone (character ids,
[START] and [END], drop or clip at `sequence_length`, the one-position shift,
padding with 0, `tf.data`'s bucketing order) and never calls this package.
`make_translation_dataset` and the public steps composed by hand must both give
its batches, element by element.
"""

import numpy as np
import pytest
import tensorflow as tf

from keras_transformer_layers import data

PAD, OOV, START, END = 0, 1, 2, 3
SOURCE_CHARACTERS = "abc"  # ids 4, 5, 6; "q" is out of vocabulary (1)
TARGET_CHARACTERS = "wxyz"  # ids 4 .. 7
SOURCE = data.TextTokenizer(vocabulary=list(SOURCE_CHARACTERS))
TARGET = data.TextTokenizer(vocabulary=list(TARGET_CHARACTERS))


def _corpus(num_pairs=40, seed=0):
    """Fixed random pairs, empty strings and out-of-vocabulary characters included."""
    rng = np.random.default_rng(seed)

    def text(characters):
        return "".join(rng.choice(list(characters), size=int(rng.integers(0, 11))))

    return [(text(SOURCE_CHARACTERS + "q"), text(TARGET_CHARACTERS)) for _ in range(num_pairs)]


def _ids(text, characters):
    return [characters.index(c) + 4 if c in characters else OOV for c in text]


def _reference_examples(pairs, sequence_length, long_pairs):
    """(source, decoder input, label) lists, in the order of `pairs`."""
    examples = []
    for source_text, target_text in pairs:
        source = [START, *_ids(source_text, SOURCE_CHARACTERS), END]
        target = [START, *_ids(target_text, TARGET_CHARACTERS), END]
        if sequence_length is not None:
            too_long = len(source) > sequence_length or len(target) > sequence_length
            if too_long and long_pairs == "drop":
                continue
            source, target = source[:sequence_length], target[:sequence_length]
        examples.append((source, target[:-1], target[1:]))
    return examples


def _pad(rows):
    width = max(len(row) for row in rows)
    return np.array([row + [PAD] * (width - len(row)) for row in rows], np.int32)


def _reference_batches(pairs, batch_size, sequence_length=None, long_pairs="drop", buckets=None):
    """Padded batches; with `buckets`, in the order `bucket_by_sequence_length` emits them.

    A pair goes to the first bucket whose upper boundary exceeds its length
    (the longer of source and decoder input); a bucket is emitted when it holds
    `batch_size` pairs, and the partly filled ones at the end, first bucket first.
    """
    examples = _reference_examples(pairs, sequence_length, long_pairs)
    if buckets is None:
        groups = [examples[i : i + batch_size] for i in range(0, len(examples), batch_size)]
    else:
        groups, open_buckets = [], [[] for _ in range(len(buckets) + 1)]
        for example in examples:
            length = max(len(example[0]), len(example[1]))
            index = sum(length >= boundary for boundary in buckets)
            open_buckets[index].append(example)
            if len(open_buckets[index]) == batch_size:
                groups.append(open_buckets[index])
                open_buckets[index] = []
        groups += [bucket for bucket in open_buckets if bucket]
    return [tuple(_pad([example[i] for example in group]) for i in range(3)) for group in groups]


def _as_lists(dataset):
    return [
        (inputs["encoder_inputs"], inputs["decoder_inputs"], labels)
        for inputs, labels in dataset.as_numpy_iterator()
    ]


def _assert_same_batches(got, expected):
    assert len(got) == len(expected)
    for got_batch, expected_batch in zip(got, expected, strict=True):
        for got_array, expected_array in zip(got_batch, expected_batch, strict=True):
            assert got_array.dtype == np.int32
            np.testing.assert_array_equal(got_array, expected_array)


SETTINGS = {
    "no_limit": {"batch_size": 3},
    "drop": {"batch_size": 4, "sequence_length": 7, "long_pairs": "drop"},
    "clip": {"batch_size": 4, "sequence_length": 7, "long_pairs": "clip"},
    "buckets": {"batch_size": 3, "bucket_boundaries": [5, 9], "sequence_length": 11},
    "buckets_clip": {
        "batch_size": 2,
        "bucket_boundaries": [4],
        "sequence_length": 6,
        "long_pairs": "clip",
    },
}


def _reference(pairs, settings):
    return _reference_batches(
        pairs,
        settings["batch_size"],
        settings.get("sequence_length"),
        settings.get("long_pairs", "drop"),
        settings.get("bucket_boundaries"),
    )


@pytest.mark.parametrize("cache", [True, False])
@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_make_translation_dataset_matches_the_reference(name, cache):
    pairs = _corpus()
    dataset = data.make_translation_dataset(
        tf.data.Dataset.from_tensor_slices(tuple(map(list, zip(*pairs, strict=True)))),
        SOURCE,
        TARGET,
        cache=cache,
        **SETTINGS[name],
    )
    expected = _reference(pairs, SETTINGS[name])
    assert len(expected) >= 3  # the settings leave several batches to compare
    _assert_same_batches(_as_lists(dataset), expected)
