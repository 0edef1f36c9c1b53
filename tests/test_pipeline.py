import numpy as np
import pytest
import tensorflow as tf

from keras_transformer_layers.data import TextTokenizer
from keras_transformer_layers.data import make_translation_dataset

# Source characters a=4 b=5; target characters x=4 y=5 z=6.
SOURCE = TextTokenizer(vocabulary=["a", "b"])
TARGET = TextTokenizer(vocabulary=["x", "y", "z"])


def _pairs(pairs):
    sources, targets = zip(*pairs)
    return tf.data.Dataset.from_tensor_slices((list(sources), list(targets)))


def test_shapes_and_shift_on_hand_example():
    dataset = make_translation_dataset(
        _pairs([("ab", "xyz"), ("b", "y")]), SOURCE, TARGET, batch_size=2
    )
    (inputs, labels), = list(dataset.as_numpy_iterator())
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
    (inputs, labels), = list(
        make_translation_dataset(dataset, SOURCE, TARGET, batch_size=4, keys=("en", "es"))
        .as_numpy_iterator()
    )
    np.testing.assert_array_equal(inputs["encoder_inputs"], [[2, 4, 5, 3]])
    np.testing.assert_array_equal(labels, [[6, 3]])


def test_drop_and_clip_long_pairs():
    pairs = [("a", "x"), ("aaaa", "x"), ("a", "xyzxyz")]
    dropped = list(
        make_translation_dataset(_pairs(pairs), SOURCE, TARGET, batch_size=8, max_length=4)
        .as_numpy_iterator()
    )
    (inputs, labels), = dropped
    np.testing.assert_array_equal(inputs["encoder_inputs"], [[2, 4, 3]])
    (inputs, labels), = list(
        make_translation_dataset(
            _pairs(pairs), SOURCE, TARGET, batch_size=8, max_length=4, long_pairs="clip"
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
        (inputs, _), = list(dataset.as_numpy_iterator())
        return (inputs["encoder_inputs"] != 0).sum(axis=1)

    lengths = first_column(3)
    assert sorted(lengths.tolist()) == list(range(3, 23))
    np.testing.assert_array_equal(lengths, first_column(3))
    assert lengths.tolist() != sorted(lengths.tolist())


def test_bad_arguments():
    pairs = _pairs([("a", "x")])
    with pytest.raises(ValueError, match=r"`batch_size`.*Received: batch_size=0"):
        make_translation_dataset(pairs, SOURCE, TARGET, batch_size=0)
    with pytest.raises(ValueError, match=r"`max_length`.*Received: max_length=2"):
        make_translation_dataset(pairs, SOURCE, TARGET, batch_size=1, max_length=2)
    with pytest.raises(ValueError, match=r"`long_pairs`.*Received: long_pairs='cut'"):
        make_translation_dataset(pairs, SOURCE, TARGET, batch_size=1, long_pairs="cut")
    with pytest.raises(ValueError, match=r"`bucket_boundaries`.*Received: bucket_boundaries=\[8, 4\]"):
        make_translation_dataset(pairs, SOURCE, TARGET, batch_size=1, bucket_boundaries=[8, 4])
    with pytest.raises(ValueError, match=r"`keys`.*Received: keys=\('en', 'es'\)"):
        make_translation_dataset(pairs, SOURCE, TARGET, batch_size=1, keys=("en", "es"))
    with pytest.raises(ValueError, match=r"`pairs`.*Received: pairs=\['a'\]"):
        make_translation_dataset(["a"], SOURCE, TARGET, batch_size=1)
