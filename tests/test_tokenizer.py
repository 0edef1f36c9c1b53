import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transformer_layers.data import tokenizer as tok
from keras_transformer_layers.data.tokenizer import TextTokenizer
from keras_transformer_layers.data.tokenizer import build_vocabulary


def test_reserved_ids():
    assert (tok.PADDING_ID, tok.OOV_ID, tok.START_ID, tok.END_ID) == (0, 1, 2, 3)
    t = TextTokenizer(vocabulary=["a"])
    assert t.get_vocabulary() == ["", "[UNK]", "[START]", "[END]", "a"]
    assert t.vocabulary_size == 5


def test_character_tokenize_hand_example():
    t = TextTokenizer(vocabulary=["1", "9", "-", "4"])
    ids = t(tf.constant(["1941-", "9"])).numpy()
    # [START]=2, '1'=4, '9'=5, '-'=6, '4'=7, [END]=3, padding 0
    np.testing.assert_array_equal(ids, [[2, 4, 5, 7, 4, 6, 3], [2, 5, 3, 0, 0, 0, 0]])
    assert ids.dtype == np.int32
    # Unknown characters map to [UNK]=1; multi-byte characters are one token.
    np.testing.assert_array_equal(t.tokenize(tf.constant("1é")).numpy(), [4, 1])


def test_detokenize_stops_at_end_and_skips_padding():
    t = TextTokenizer(vocabulary=["a", "b"])
    ids = [[2, 4, 5, 3, 4, 4], [4, 0, 5, 0, 0, 0], [2, 99, -1, 3, 0, 0]]
    np.testing.assert_array_equal(t.detokenize(ids).numpy(), [b"ab", b"ab", b"[UNK][UNK]"])
    assert t.detokenize(tf.constant([2, 5, 3, 5])).numpy() == b"b"


def test_word_tokenizer_lowercases_and_splits_punctuation():
    vocabulary = build_vocabulary(["¿Qué tal?", "Muy bien, ¿y tú?"], split="word", lowercase=True)
    # Counts: '¿' 2, '?' 2, then singletons alphabetically.
    assert vocabulary[:2] == ["?", "¿"]
    assert sorted(vocabulary) == sorted([",", "?", "bien", "muy", "qué", "tal", "tú", "y", "¿"])
    t = TextTokenizer(vocabulary=vocabulary, split="word", lowercase=True)
    ids = t(tf.constant(["¿QUÉ TAL?"]))
    assert t.detokenize(ids).numpy()[0].decode() == "¿ qué tal ?"


@pytest.mark.parametrize("split", ["character", "word"])
def test_round_trip_on_known_text(split):
    texts = ["the cat sat .", "a dog ran ."]
    t = TextTokenizer(vocabulary=build_vocabulary(texts, split=split), split=split)
    np.testing.assert_array_equal(
        t.detokenize(t(tf.constant(texts))).numpy(), [s.encode() for s in texts]
    )


def test_build_vocabulary_order_limits_and_dataset_input():
    texts = ["aaab", "bbc", "d"]
    assert build_vocabulary(texts) == ["a", "b", "c", "d"]  # 3, 3, 1, 1: ties by token
    assert build_vocabulary(texts, max_tokens=6) == ["a", "b"]
    assert build_vocabulary(texts, min_count=2) == ["a", "b"]
    dataset = tf.data.Dataset.from_tensor_slices(texts)
    assert build_vocabulary(dataset) == ["a", "b", "c", "d"]


def test_empty_vocabulary_errors():
    with pytest.raises(
        ValueError, match=r"`vocabulary` must hold at least one token.*Received: vocabulary=\[\]"
    ):
        TextTokenizer(vocabulary=[])
    with pytest.raises(ValueError, match=r"`texts` holds no strings.*Received: texts=\[\]"):
        build_vocabulary([])
    with pytest.raises(ValueError, match=r"No token is left.*Received: min_count=5"):
        build_vocabulary(["ab"], min_count=5)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"`split`.*Received: split='bpe'"):
        TextTokenizer(vocabulary=["a"], split="bpe")
    with pytest.raises(
        ValueError, match=r"reserved tokens.*Received: vocabulary containing \['\[END\]'\]"
    ):
        TextTokenizer(vocabulary=["a", "[END]"])
    with pytest.raises(ValueError, match=r"distinct.*Received: vocabulary with duplicates \['a'\]"):
        TextTokenizer(vocabulary=["a", "b", "a"])
    with pytest.raises(
        ValueError, match=r"`vocabulary` must be a list.*Received: vocabulary='abc'"
    ):
        TextTokenizer(vocabulary="abc")
    with pytest.raises(ValueError, match=r"`max_tokens`.*Received: max_tokens=4"):
        build_vocabulary(["a"], max_tokens=4)
    with pytest.raises(ValueError, match=r"`lowercase`.*Received: lowercase='yes'"):
        TextTokenizer(vocabulary=["a"], lowercase="yes")


def test_keras_file_round_trip(tmp_path):
    t = TextTokenizer(vocabulary=["x", "y", "é"], split="character", lowercase=True)
    inputs = keras.Input(shape=(), dtype="string")
    model = keras.Model(inputs, t(inputs))
    assert model.output.shape == (None, None) and model.output.dtype == "int32"
    path = str(tmp_path / "tok.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    restored_tokenizer = restored.layers[1]
    assert isinstance(restored_tokenizer, TextTokenizer)
    assert restored_tokenizer.get_config() == t.get_config()
    texts = tf.constant(["XyÉ", "yy"])
    np.testing.assert_array_equal(restored(texts), model(texts))
    np.testing.assert_array_equal(model(texts).numpy()[0], [2, 4, 5, 6, 3])


def test_saved_model_string_in_string_out(tmp_path):
    # What the export issue builds on: tokenize and detokenize inside one
    # SavedModel signature, reloaded with TensorFlow alone.
    t = TextTokenizer(vocabulary=list("abcdefghijklmnopqrstuvwxyz "))

    class Echo(tf.Module):
        def __init__(self, tokenizer):
            super().__init__()
            self.tokenizer = tokenizer

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve(self, texts):
            return self.tokenizer.detokenize(self.tokenizer(texts))

    path = str(tmp_path / "saved")
    tf.saved_model.save(Echo(t), path)
    loaded = tf.saved_model.load(path)
    out = loaded.serve(tf.constant(["hello world", "abc"]))
    np.testing.assert_array_equal(out.numpy(), [b"hello world", b"abc"])


@pytest.mark.parametrize(
    "texts, received",
    [
        (None, r"Received: texts=None"),
        (5, r"Received: texts=5"),
        ("abc", r"Received: texts='abc'"),
        ([1, 2], r"must be a `str` or `bytes`\. Received: texts\[0\]=1"),
        (["ok", None], r"Received: texts\[1\]=None"),
    ],
)
def test_build_vocabulary_rejects_non_text(texts, received):
    with pytest.raises(ValueError, match=rf"`texts`.*{received}$"):
        build_vocabulary(texts)


@pytest.mark.parametrize("split", ["character", "word"])
def test_build_vocabulary_rejects_invalid_utf8(split):
    texts = ["ok"] * 1500 + [b"ab\xff"]  # the bad one is in the second batch of 1024
    with pytest.raises(
        ValueError,
        match=r"`texts` must hold UTF-8 text\. Received: texts\[1500\]=b'ab\\xff', which is not",
    ):
        build_vocabulary(texts, split=split)
    dataset = tf.data.Dataset.from_tensor_slices([b"\xc3(", b"x"])
    with pytest.raises(ValueError, match=r"Received: texts\[0\]=b'\\xc3\('"):
        build_vocabulary(dataset, split=split)
    # Valid multi-byte UTF-8, as bytes or str, is fine.
    assert build_vocabulary([b"\xc3\xa9", "é"]) == ["é"]


def test_build_vocabulary_rejects_datasets_that_are_not_string_scalars():
    with pytest.raises(
        ValueError, match=r"`texts` must be a `tf.data.Dataset` of string scalars.*int32"
    ):
        build_vocabulary(tf.data.Dataset.from_tensor_slices([1, 2]))
    pairs = tf.data.Dataset.from_tensor_slices((["a"], ["b"]))
    with pytest.raises(ValueError, match=r"`texts` must be a `tf.data.Dataset` of string scalars"):
        build_vocabulary(pairs)
    with pytest.raises(ValueError, match=r"`lowercase`.*Received: lowercase=1"):
        build_vocabulary(["a"], lowercase=1)


@pytest.mark.parametrize(
    "vocabulary, split, lowercase, never",
    [
        (["a", "ab"], "character", False, ["ab"]),
        (["a", "e\u0301"], "character", False, ["e\u0301"]),  # two code points
        (["a", "A"], "character", True, ["A"]),
        (["hola", "buenos días"], "word", False, ["buenos días"]),
        (["qué", "¿qué"], "word", False, ["¿qué"]),
        (["don't", "hola", "Hola"], "word", True, ["don't", "Hola"]),
    ],
)
def test_vocabulary_entries_that_can_never_match(vocabulary, split, lowercase, never):
    with pytest.raises(
        ValueError,
        match=rf"Every `vocabulary` entry must be one token.*Received: vocabulary entries {re.escape(repr(never))}",
    ):
        TextTokenizer(vocabulary=vocabulary, split=split, lowercase=lowercase)
    # Without the bad entries, every entry is reachable: it tokenizes to its own id.
    good = [entry for entry in vocabulary if entry not in never]
    t = TextTokenizer(vocabulary=good, split=split, lowercase=lowercase)
    separator = "" if split == "character" else " "
    ids = t.tokenize(tf.constant(separator.join(good))).numpy()
    np.testing.assert_array_equal(ids, np.arange(len(good)) + 4)


def test_space_and_punctuation_entries_match():
    t = TextTokenizer(vocabulary=[" ", "a", "¿"])
    np.testing.assert_array_equal(t.tokenize(tf.constant("¿a a")).numpy(), [6, 5, 4, 5])
    w = TextTokenizer(vocabulary=["¿", "qué", "?"], split="word")
    np.testing.assert_array_equal(w.tokenize(tf.constant("¿qué?")).numpy(), [4, 5, 6])


def test_invalid_utf8_at_call_time_reads_as_unknown():
    for split in ("character", "word"):
        t = TextTokenizer(vocabulary=["a", "b"], split=split, lowercase=True)
        ids = t(tf.constant([b"a \xff b" if split == "word" else b"a\xffb"])).numpy()
        np.testing.assert_array_equal(ids, [[2, 4, 1, 5, 3]])


def test_bad_call_and_detokenize_inputs():
    t = TextTokenizer(vocabulary=["a", "b"])
    with pytest.raises(
        ValueError, match=r"`inputs` must be a string tensor.*Received: inputs=<tf.Tensor"
    ):
        t(tf.constant([1, 2]))
    with pytest.raises(ValueError, match=r"`inputs`.*Received: inputs.shape=\(2, 2\)"):
        t(tf.constant([["a", "b"], ["a", "b"]]))
    # A (batch, 1) column is a batch.
    np.testing.assert_array_equal(
        t(tf.constant([["ab"], ["b"]])).numpy(), [[2, 4, 5, 3], [2, 5, 3, 0]]
    )
    with pytest.raises(ValueError, match=r"`inputs`.*Received: inputs=3"):
        t.tokenize(3)
    with pytest.raises(ValueError, match=r"`texts`.*Received: texts.shape=\(1, 1\)"):
        tok.split_text(tf.constant([["a"]]))
    with pytest.raises(ValueError, match=r"`lowercase`.*Received: lowercase='no'"):
        tok.split_text("a", lowercase="no")
    with pytest.raises(ValueError, match=r"`ids` must be an integer tensor.*dtype=float32"):
        t.detokenize([[2.0, 4.7, 3.0]])
    with pytest.raises(ValueError, match=r"`ids` must be an integer tensor.*shape=\(1, 1, 3\)"):
        t.detokenize([[[2, 4, 3]]])
    with pytest.raises(ValueError, match=r"`ids` must be an integer tensor.*dtype=string"):
        t.detokenize(["a"])
    # int64 ids beyond int32 read as [UNK], not as the id they wrap to.
    np.testing.assert_array_equal(
        t.detokenize(tf.constant([[2, 2**32 + 4, 5, 3]], tf.int64)).numpy(), [b"[UNK]b"]
    )
