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


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_the_steps_composed_by_hand_match_the_reference(name):
    settings = SETTINGS[name]
    pairs = _corpus(seed=1)
    strings = tf.data.Dataset.from_tensor_slices(tuple(map(list, zip(*pairs, strict=True))))
    ids = data.tokenize_pairs(strings, SOURCE, TARGET)
    packed = data.pack_pairs(
        ids, settings.get("sequence_length"), settings.get("long_pairs", "drop")
    )
    batches = data.padded_batches(
        data.shift_targets(packed), settings["batch_size"], settings.get("bucket_boundaries")
    )
    checked = data.check_batches(batches, SOURCE.vocabulary_size, TARGET.vocabulary_size)
    _assert_same_batches(_as_lists(checked), _reference(pairs, settings))


def test_tokenize_and_pack_one_pair_at_a_time():
    pairs = _corpus(num_pairs=12, seed=2)
    strings = tf.data.Dataset.from_tensor_slices(tuple(map(list, zip(*pairs, strict=True))))
    ids = list(data.tokenize_pairs(strings, SOURCE, TARGET).as_numpy_iterator())
    assert [(s.tolist(), t.tolist()) for s, t in ids] == [
        (_ids(s, SOURCE_CHARACTERS), _ids(t, TARGET_CHARACTERS)) for s, t in pairs
    ]
    assert all(s.dtype == np.int32 and t.dtype == np.int32 for s, t in ids)
    packed = data.pack_pairs(data.tokenize_pairs(strings, SOURCE, TARGET), 5, "clip")
    for (source, target), (source_text, target_text) in zip(
        packed.as_numpy_iterator(), pairs, strict=True
    ):
        assert source.tolist() == [START, *_ids(source_text, SOURCE_CHARACTERS), END][:5]
        assert target.tolist() == [START, *_ids(target_text, TARGET_CHARACTERS), END][:5]


def test_step_docstring_examples_run():
    import doctest

    globs = {"tf": tf, "TextTokenizer": data.TextTokenizer, **vars(data)}
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    steps = ("tokenize_pairs", "pack_pairs", "shift_targets", "padded_batches", "check_batches")
    for step in steps:
        (test,) = doctest.DocTestFinder(recurse=False).find(getattr(data, step), step, globs=globs)
        assert test.examples
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_check_batches_stops_at_a_bad_id_and_an_empty_pass():
    batches = tf.data.Dataset.from_tensors(
        ({"encoder_inputs": [[2, 9, 3]], "decoder_inputs": [[2, 4]]}, [[4, 3]])
    )
    checked = data.check_batches(batches, source_vocabulary_size=8, target_vocabulary_size=8)
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"`encoder_inputs` must hold ids in \[0, source_vocabulary_size\).*\[9\]",
    ):
        list(checked.as_numpy_iterator())
    assert len(list(data.check_batches(batches, 10, 8).as_numpy_iterator())) == 1
    empty = data.check_batches(batches.take(0), 10, 8, empty_message="nothing came")
    with pytest.raises(tf.errors.InvalidArgumentError, match="nothing came"):
        list(empty.as_numpy_iterator())


def test_steps_reject_bad_arguments():
    ids = tf.data.Dataset.from_tensors(([4], [5]))
    examples = data.shift_targets(data.pack_pairs(ids))
    strings = tf.data.Dataset.from_tensors(("a", "x"))
    cases = [
        (lambda: data.tokenize_pairs(["a"], SOURCE, TARGET), r"`pairs`.*Received: pairs=\['a'\]"),
        (lambda: data.tokenize_pairs(strings, SOURCE, None), r"`target_tokenizer`.*=None"),
        (lambda: data.pack_pairs(strings), r"`id_pairs` must be .* integer id"),
        (lambda: data.pack_pairs(ids, 2), r"`sequence_length`.*Received: sequence_length=2"),
        (lambda: data.pack_pairs(ids, 4, "cut"), r"`long_pairs`.*Received: long_pairs='cut'"),
        (lambda: data.shift_targets(strings), r"`packed_pairs`.*Received: packed_pairs="),
        (lambda: data.padded_batches(ids, 2), r"`examples` must be .*Received: examples="),
        (lambda: data.padded_batches(examples, 0), r"`batch_size`.*Received: batch_size=0"),
        (
            lambda: data.padded_batches(examples, 2, [4, 4]),
            r"`bucket_boundaries`.*Received: bucket_boundaries=\[4, 4\]",
        ),
        (
            lambda: data.check_batches(examples, 3, 8),
            r"`source_vocabulary_size` must be greater than 3.*Received: "
            r"source_vocabulary_size=3",
        ),
        (
            lambda: data.check_batches(examples, 8, 8, empty_message=1),
            r"`empty_message`.*Received: empty_message=1",
        ),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
