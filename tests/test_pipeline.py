import numpy as np
import pytest
import tensorflow as tf

from keras_transformer_layers.data import TextTokenizer
from keras_transformer_layers.data import make_translation_dataset

# Source characters a=4 b=5; target characters x=4 y=5 z=6.
SOURCE = TextTokenizer(vocabulary=["a", "b"])
TARGET = TextTokenizer(vocabulary=["x", "y", "z"])


def _pairs(pairs):
    sources, targets = zip(*pairs, strict=True)
    return tf.data.Dataset.from_tensor_slices((list(sources), list(targets)))


def test_shapes_and_shift_on_hand_example():
    dataset = make_translation_dataset(
        _pairs([("ab", "xyz"), ("b", "y")]), SOURCE, TARGET, batch_size=2
    )
    ((inputs, labels),) = list(dataset.as_numpy_iterator())
    assert sorted(inputs) == ["decoder_inputs", "encoder_inputs"]
    np.testing.assert_array_equal(inputs["encoder_inputs"], [[2, 4, 5, 3], [2, 5, 3, 0]])
    # target [START] x y z [END] -> reads [START] x y z, predicts x y z [END].
    np.testing.assert_array_equal(inputs["decoder_inputs"], [[2, 4, 5, 6], [2, 5, 0, 0]])
    np.testing.assert_array_equal(labels, [[4, 5, 6, 3], [5, 3, 0, 0]])
    assert labels.dtype == np.int32 and inputs["encoder_inputs"].dtype == np.int32
    # Decoder input and label are padded at the same positions.
    np.testing.assert_array_equal(inputs["decoder_inputs"] != 0, labels != 0)


def test_dict_elements_with_keys():
    dataset = tf.data.Dataset.from_tensor_slices({"en": ["ab"], "es": ["z"]})
    ((inputs, labels),) = list(
        make_translation_dataset(
            dataset, SOURCE, TARGET, batch_size=4, keys=("en", "es")
        ).as_numpy_iterator()
    )
    np.testing.assert_array_equal(inputs["encoder_inputs"], [[2, 4, 5, 3]])
    np.testing.assert_array_equal(labels, [[6, 3]])


def test_drop_and_clip_long_pairs():
    pairs = [("a", "x"), ("aaaa", "x"), ("a", "xyzxyz")]
    dropped = list(
        make_translation_dataset(
            _pairs(pairs), SOURCE, TARGET, batch_size=8, sequence_length=4
        ).as_numpy_iterator()
    )
    ((inputs, labels),) = dropped
    np.testing.assert_array_equal(inputs["encoder_inputs"], [[2, 4, 3]])
    ((inputs, labels),) = list(
        make_translation_dataset(
            _pairs(pairs), SOURCE, TARGET, batch_size=8, sequence_length=4, long_pairs="clip"
        ).as_numpy_iterator()
    )
    # Clipped to 4 ids: [START] + 3 tokens, the [END] is cut off.
    np.testing.assert_array_equal(
        inputs["encoder_inputs"], [[2, 4, 3, 0], [2, 4, 4, 4], [2, 4, 3, 0]]
    )
    np.testing.assert_array_equal(labels, [[4, 3, 0], [4, 3, 0], [4, 5, 6]])


def test_bucketing_groups_by_length():
    pairs = [("a" * n, "x" * n) for n in [1, 9, 2, 10, 1, 9, 2, 10]]
    dataset = make_translation_dataset(
        _pairs(pairs), SOURCE, TARGET, batch_size=4, bucket_boundaries=[6]
    )
    widths = sorted(inputs["encoder_inputs"].shape[1] for inputs, _ in dataset.as_numpy_iterator())
    # Short pairs (length <= 4 with start/end) and long ones (11, 12) never share a batch.
    assert widths == [4, 12]
    total = sum(labels.shape[0] for _, labels in dataset.as_numpy_iterator())
    assert total == 8


def test_shuffle_is_seeded_and_keeps_all_pairs():
    pairs = [("a" * n, "x" * n) for n in range(1, 21)]

    def first_column(seed):
        dataset = make_translation_dataset(
            _pairs(pairs), SOURCE, TARGET, batch_size=20, shuffle_buffer_size=20, seed=seed
        )
        ((inputs, _),) = list(dataset.as_numpy_iterator())
        return (inputs["encoder_inputs"] != 0).sum(axis=1)

    lengths = first_column(3)
    assert sorted(lengths.tolist()) == list(range(3, 23))
    np.testing.assert_array_equal(lengths, first_column(3))
    assert lengths.tolist() != sorted(lengths.tolist())


def test_bad_arguments():
    pairs = _pairs([("a", "x")])
    with pytest.raises(ValueError, match=r"`batch_size`.*Received: batch_size=0"):
        make_translation_dataset(pairs, SOURCE, TARGET, batch_size=0)
    with pytest.raises(ValueError, match=r"`sequence_length`.*Received: sequence_length=2"):
        make_translation_dataset(pairs, SOURCE, TARGET, batch_size=1, sequence_length=2)
    with pytest.raises(ValueError, match=r"`long_pairs`.*Received: long_pairs='cut'"):
        make_translation_dataset(pairs, SOURCE, TARGET, batch_size=1, long_pairs="cut")
    with pytest.raises(
        ValueError, match=r"`bucket_boundaries`.*Received: bucket_boundaries=\[8, 4\]"
    ):
        make_translation_dataset(pairs, SOURCE, TARGET, batch_size=1, bucket_boundaries=[8, 4])
    with pytest.raises(ValueError, match=r"`keys`.*Received: keys=\('en', 'es'\)"):
        make_translation_dataset(pairs, SOURCE, TARGET, batch_size=1, keys=("en", "es"))
    with pytest.raises(ValueError, match=r"`pairs`.*Received: pairs=\['a'\]"):
        make_translation_dataset(["a"], SOURCE, TARGET, batch_size=1)


def test_long_pairs_dropped_across_tokenizer_batches_match_python():
    # More than one tokenizer batch of 1024: the kept pairs are exactly those
    # whose source and target fit, in order.
    rng = np.random.default_rng(0)
    pairs = [("a" * int(n), "x" * int(m)) for n, m in rng.integers(1, 9, size=(2500, 2))]
    kept = [(s, t) for s, t in pairs if len(s) + 2 <= 7 and len(t) + 2 <= 7]
    dataset = make_translation_dataset(
        _pairs(pairs), SOURCE, TARGET, batch_size=4096, sequence_length=7
    )
    ((inputs, labels),) = list(dataset.as_numpy_iterator())
    assert len(labels) == len(kept) < len(pairs)
    np.testing.assert_array_equal(
        (inputs["encoder_inputs"] != 0).sum(1), [len(s) + 2 for s, _ in kept]
    )
    np.testing.assert_array_equal((labels != 0).sum(1), [len(t) + 1 for _, t in kept])


@pytest.mark.parametrize("cache", [True, False])
def test_every_pair_dropped_is_an_error(cache):
    pairs = _pairs([("aaaa", "x"), ("a", "xyzxyz"), ("aaaaa", "xxxxx")])
    dataset = make_translation_dataset(
        pairs, SOURCE, TARGET, batch_size=2, sequence_length=4, cache=cache
    )
    message = (
        r"No pair is left: `pairs` is empty, or every pair has a source or target "
        r"longer than sequence_length=4 ids .*`long_pairs` is drop"
    )
    for _ in range(2):  # every pass, cached or not
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            list(dataset.as_numpy_iterator())
    # "clip" keeps them all.
    clipped = make_translation_dataset(
        pairs, SOURCE, TARGET, batch_size=8, sequence_length=4, long_pairs="clip"
    )
    assert sum(len(labels) for _, labels in clipped.as_numpy_iterator()) == 3


def test_empty_pairs_is_an_error():
    empty = tf.data.Dataset.from_tensor_slices((["a"], ["x"])).take(0)
    with pytest.raises(ValueError, match=r"`pairs` holds no .*Received: pairs=.* with 0 elements"):
        make_translation_dataset(empty, SOURCE, TARGET, batch_size=2)
    # Unknown length, empty at run time: every pass fails.
    filtered = _pairs([("a", "x")]).filter(lambda s, t: tf.strings.length(s) > 5)
    dataset = make_translation_dataset(filtered, SOURCE, TARGET, batch_size=2)
    for _ in range(2):
        with pytest.raises(
            tf.errors.InvalidArgumentError, match=r"`pairs` holds no \(source, target\)"
        ):
            list(dataset.as_numpy_iterator())


def test_vocabulary_size_smaller_than_the_tokenizer_is_an_error():
    pairs = _pairs([("ab", "xyz")])
    # TARGET gives ids up to 6 (vocabulary_size 7): a 6-row model cannot take them.
    with pytest.raises(
        ValueError,
        match=r"`target_vocabulary_size` must be at least the `vocabulary_size` of "
        r"`target_tokenizer` \(7\).*Received: target_vocabulary_size=6",
    ):
        make_translation_dataset(pairs, SOURCE, TARGET, batch_size=1, target_vocabulary_size=6)
    with pytest.raises(
        ValueError, match=r"`source_vocabulary_size`.*Received: source_vocabulary_size=5"
    ):
        make_translation_dataset(pairs, SOURCE, TARGET, batch_size=1, source_vocabulary_size=5)
    for bad in (0, 3, 7.0, True, "7"):
        with pytest.raises(ValueError, match=rf"Received: target_vocabulary_size={bad!r}"):
            make_translation_dataset(
                pairs, SOURCE, TARGET, batch_size=1, target_vocabulary_size=bad
            )
    # Equal or larger sizes change nothing.
    ((inputs, labels),) = list(
        make_translation_dataset(
            pairs,
            SOURCE,
            TARGET,
            batch_size=1,
            source_vocabulary_size=6,
            target_vocabulary_size=12,
        ).as_numpy_iterator()
    )
    np.testing.assert_array_equal(inputs["encoder_inputs"], [[2, 4, 5, 3]])
    np.testing.assert_array_equal(labels, [[4, 5, 6, 3]])


class _FixedIdTokenizer:
    """A duck-typed tokenizer that maps every character to one id."""

    def __init__(self, token_id):
        self.token_id = token_id

    def tokenize(self, texts):
        characters = tf.strings.unicode_split(texts, "UTF-8")
        return characters.with_flat_values(tf.fill(tf.shape(characters.flat_values), self.token_id))


@pytest.mark.parametrize("cache", [True, False])
@pytest.mark.parametrize("bad", [12, 15, 10**6, -1])
def test_tokenizer_ids_outside_the_vocabulary_stop_the_pipeline(bad, cache):
    pairs = _pairs([("ab", "xy"), ("b", "z")])
    dataset = make_translation_dataset(
        pairs,
        SOURCE,
        _FixedIdTokenizer(bad),
        batch_size=2,
        target_vocabulary_size=12,
        cache=cache,
    )
    message = (
        r"(?s)`decoder_inputs` must hold ids in \[0, target_vocabulary_size\) or the padding "
        rf"id 0\. Received: decoder_inputs=\] \[{bad} {bad} {bad}\].*\[12\]"
    )
    for _ in range(2):  # every pass, cached or not
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            list(dataset.as_numpy_iterator())
    # In range, the same tokenizer goes through.
    ((_, labels),) = list(
        make_translation_dataset(
            pairs, SOURCE, _FixedIdTokenizer(11), batch_size=2, target_vocabulary_size=12
        ).as_numpy_iterator()
    )
    np.testing.assert_array_equal(labels, [[11, 11, 3], [11, 3, 0]])


def test_tokenizer_padding_id_inside_a_sequence_stops_the_pipeline():
    pairs = _pairs([("ab", "xy")])
    dataset = make_translation_dataset(
        pairs, _FixedIdTokenizer(0), TARGET, batch_size=1, source_vocabulary_size=6
    )
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"`encoder_inputs` holds the padding id 0 inside a sequence.*\[\[2 0 0 3\]\]",
    ):
        list(dataset.as_numpy_iterator())


def test_tokenizer_without_vocabulary_size_needs_the_size():
    pairs = _pairs([("ab", "xy")])
    with pytest.raises(
        ValueError,
        match=r"`target_vocabulary_size` must be given.*Received: target_vocabulary_size=None",
    ):
        make_translation_dataset(pairs, SOURCE, _FixedIdTokenizer(4), batch_size=1)
    with pytest.raises(
        ValueError,
        match=r"`source_tokenizer` must have a `tokenize` method.*Received: source_tokenizer='abc'",
    ):
        make_translation_dataset(pairs, "abc", TARGET, batch_size=1)


def test_more_bad_arguments():
    pairs = _pairs([("a", "x")])
    with pytest.raises(ValueError, match=r"`seed`.*Received: seed='1'"):
        make_translation_dataset(pairs, SOURCE, TARGET, batch_size=1, seed="1")
    with pytest.raises(ValueError, match=r"`cache`.*Received: cache='yes'"):
        make_translation_dataset(pairs, SOURCE, TARGET, batch_size=1, cache="yes")
    with pytest.raises(ValueError, match=r"`bucket_boundaries`.*Received: bucket_boundaries=8"):
        make_translation_dataset(pairs, SOURCE, TARGET, batch_size=1, bucket_boundaries=8)
    with pytest.raises(ValueError, match=r"`long_pairs`.*Received: long_pairs=\['drop'\]"):
        make_translation_dataset(pairs, SOURCE, TARGET, batch_size=1, long_pairs=["drop"])
    with pytest.raises(ValueError, match=r"`batch_size`.*Received: batch_size=nan"):
        make_translation_dataset(pairs, SOURCE, TARGET, batch_size=float("nan"))
    dicts = tf.data.Dataset.from_tensor_slices({"en": ["a"], "es": ["x"]})
    with pytest.raises(ValueError, match=r"`keys`.*Received: keys='en'"):
        make_translation_dataset(dicts, SOURCE, TARGET, batch_size=1, keys="en")
    with pytest.raises(ValueError, match=r"`sequence_length`.*Received: sequence_length=inf"):
        make_translation_dataset(pairs, SOURCE, TARGET, batch_size=1, sequence_length=float("inf"))
