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
    np.testing.assert_array_equal(
        t.detokenize(ids).numpy(), [b"ab", b"ab", b"[UNK][UNK]"]
    )
    assert t.detokenize(tf.constant([2, 5, 3, 5])).numpy() == b"b"


def test_word_tokenizer_lowercases_and_splits_punctuation():
    vocabulary = build_vocabulary(
        ["¿Qué tal?", "Muy bien, ¿y tú?"], split="word", lowercase=True
    )
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
    with pytest.raises(ValueError, match=r"`vocabulary` must hold at least one token.*Received: vocabulary=\[\]"):
        TextTokenizer(vocabulary=[])
    with pytest.raises(ValueError, match=r"`texts` holds no strings.*Received: texts=\[\]"):
        build_vocabulary([])
    with pytest.raises(ValueError, match=r"No token is left.*Received: min_count=5"):
        build_vocabulary(["ab"], min_count=5)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"`split`.*Received: split='bpe'"):
        TextTokenizer(vocabulary=["a"], split="bpe")
    with pytest.raises(ValueError, match=r"reserved tokens.*Received: vocabulary containing \['\[END\]'\]"):
        TextTokenizer(vocabulary=["a", "[END]"])
    with pytest.raises(ValueError, match=r"distinct.*Received: vocabulary with duplicates \['a'\]"):
        TextTokenizer(vocabulary=["a", "b", "a"])
    with pytest.raises(ValueError, match=r"`vocabulary` must be a list.*Received: vocabulary='abc'"):
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
