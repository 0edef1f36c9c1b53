"""SubwordTokenizer and train_sentencepiece: ids, round trips, graph, pipeline, SavedModel."""

import doctest
import io
import json
import pathlib

import keras
import numpy as np
import pytest
import sentencepiece
import tensorflow as tf

from keras_transformer_layers import export
from keras_transformer_layers.data import make_translation_dataset
from keras_transformer_layers.data import subword
from keras_transformer_layers.data.subword import SubwordTokenizer
from keras_transformer_layers.data.subword import train_sentencepiece
from keras_transformer_layers.generation import Generator
from keras_transformer_layers.tokens import END_ID
from keras_transformer_layers.tokens import OOV_ID
from keras_transformer_layers.tokens import PADDING_ID
from keras_transformer_layers.tokens import START_ID
from tests import export_helpers as helpers

# Five characters and the word boundary: room for merges in 20 ids.
CORPUS = ["ab abé ba", "¿bab? aab", "abé ab bab", "ba ¿ab?", "aab ba abé"] * 3
VOCABULARY_SIZE = 20
TEXTS = ["ab ba", "¿bab?", "abé aab ba ab", "a"]


@pytest.fixture(scope="module")
def proto():
    return train_sentencepiece(CORPUS, VOCABULARY_SIZE)


@pytest.fixture(scope="module")
def tokenizer(proto):
    return SubwordTokenizer(proto)


@pytest.fixture(scope="module")
def processor(proto):
    """The sentencepiece library's own encoder of the same model: the reference."""
    processor = sentencepiece.SentencePieceProcessor()
    processor.LoadFromSerializedProto(proto)
    return processor


def test_training_is_deterministic(proto):
    for model_type in ("bpe", "unigram"):
        first = train_sentencepiece(CORPUS, 16, model_type=model_type)
        again = train_sentencepiece(
            tf.data.Dataset.from_tensor_slices(CORPUS), 16, model_type=model_type
        )
        assert first == again
    # The settings matter: a unigram model is a different model.
    assert first != proto


def test_special_ids_and_vocabulary(tokenizer, processor):
    assert tokenizer.vocabulary_size == VOCABULARY_SIZE == processor.GetPieceSize()
    assert tokenizer.get_vocabulary()[:4] == ["<pad>", "[UNK]", "[START]", "[END]"]
    assert (PADDING_ID, OOV_ID, START_ID, END_ID) == (0, 1, 2, 3)
    ids = keras.ops.convert_to_numpy(tokenizer(tf.constant(TEXTS)))
    for row, text in zip(ids, TEXTS, strict=True):
        expected = [START_ID, *processor.EncodeAsIds(text), END_ID]
        assert row[: len(expected)].tolist() == expected
        assert (row[len(expected) :] == PADDING_ID).all()
        assert (row[1 : len(expected) - 1] >= 4).all()
    # A character never seen in training is [UNK] and decodes as "[UNK]".
    unknown = keras.ops.convert_to_numpy(tokenizer.tokenize(tf.constant("ab zb")))
    assert OOV_ID in unknown.tolist()
    assert tokenizer.detokenize(tf.concat([[START_ID], unknown], 0)).numpy() == b"ab [UNK]b"


def test_round_trip_text_ids_text(tokenizer):
    ids = tokenizer(tf.constant(TEXTS))
    assert [t.decode("utf-8") for t in tokenizer.detokenize(ids).numpy()] == TEXTS
    # Everything from the first [END] is dropped, padding and [START] too;
    # out-of-range ids read as [UNK].
    cat = tokenizer.tokenize(tf.constant("ab")).numpy().tolist()
    mat = tokenizer.tokenize(tf.constant("ba")).numpy().tolist()
    ids = [[START_ID, *cat, END_ID, *mat, PADDING_ID], [START_ID, *mat, PADDING_ID, 99, END_ID]]
    assert tokenizer.detokenize(tf.constant(ids)).numpy().tolist() == [b"ab", b"ba[UNK]"]


def test_in_graph_equals_eager(tokenizer):
    texts = tf.constant(TEXTS)
    eager = tokenizer(texts).numpy()
    np.testing.assert_array_equal(tf.function(tokenizer)(texts).numpy(), eager)
    mapped = tf.data.Dataset.from_tensor_slices(texts).batch(4).map(tokenizer)
    np.testing.assert_array_equal(next(iter(mapped)).numpy(), eager)
    detokenize = tf.function(tokenizer.detokenize)
    assert detokenize(eager).numpy().tolist() == tokenizer.detokenize(eager).numpy().tolist()
    # Resetting the seed drops eager kernels; the model resource must survive it.
    keras.utils.set_random_seed(1)
    np.testing.assert_array_equal(tokenizer(texts).numpy(), eager)
    np.testing.assert_array_equal(tf.function(tokenizer)(texts).numpy(), eager)


def test_config_round_trip(tokenizer):
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(tokenizer)))
    restored = keras.saving.deserialize_keras_object(config)
    assert isinstance(restored, SubwordTokenizer)
    assert restored.model_proto == tokenizer.model_proto
    np.testing.assert_array_equal(
        restored(tf.constant(TEXTS)).numpy(), tokenizer(tf.constant(TEXTS)).numpy()
    )


def test_make_translation_dataset_with_subword_tokenizers(tokenizer, processor):
    pairs = tf.data.Dataset.from_tensor_slices((TEXTS, TEXTS[::-1]))
    batches = list(make_translation_dataset(pairs, tokenizer, tokenizer, batch_size=4))
    assert len(batches) == 1
    inputs, labels = batches[0]
    for i, (source, target) in enumerate(zip(TEXTS, TEXTS[::-1], strict=True)):
        source_ids = [START_ID, *processor.EncodeAsIds(source), END_ID]
        target_ids = [START_ID, *processor.EncodeAsIds(target), END_ID]
        encoder = inputs["encoder_inputs"].numpy()[i]
        assert encoder[: len(source_ids)].tolist() == source_ids
        assert (encoder[len(source_ids) :] == PADDING_ID).all()
        assert (
            inputs["decoder_inputs"].numpy()[i][: len(target_ids) - 1].tolist() == target_ids[:-1]
        )
        assert labels.numpy()[i][: len(target_ids) - 1].tolist() == target_ids[1:]


def test_docstring_examples():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    examples = 0
    for test in finder.find(subword, globs={"tf": tf, **vars(subword)}):
        examples += len(test.examples)
        runner.run(test)
    assert examples >= 2
    assert runner.summarize(verbose=False).failed == 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"vocabulary_size": 4}, r"`vocabulary_size` must be .*Received: vocabulary_size=4"),
        ({"vocabulary_size": True}, r"Received: vocabulary_size=True"),
        ({"vocabulary_size": 500}, r"could not train .*Received: vocabulary_size=500"),
        ({"model_type": "word"}, r"`model_type` must be one of .*Received: model_type='word'"),
        ({"character_coverage": float("nan")}, r"Received: character_coverage=nan"),
        ({"character_coverage": 0.0}, r"in \(0, 1\]. Received: character_coverage=0.0"),
        ({"texts": "the cat"}, r"`texts` must be a list .*Received: texts='the cat'"),
        ({"texts": []}, r"Received: texts=\[\]"),
        ({"texts": ["ok", b"\xff"]}, r"UTF-8 text. Received: texts\[1\]=b'\\xff'"),
        ({"texts": ["a\nb"]}, r"without line breaks. Received: texts\[0\]='a\\nb'"),
    ],
)
def test_train_sentencepiece_rejects_bad_input(kwargs, match):
    arguments = {"texts": CORPUS, "vocabulary_size": VOCABULARY_SIZE, **kwargs}
    with pytest.raises(ValueError, match=match):
        train_sentencepiece(**arguments)


def test_tokenizer_rejects_bad_input(tokenizer):
    with pytest.raises(ValueError, match=r"`model_proto` must be .*Received: model_proto=b'junk'"):
        SubwordTokenizer(b"junk")
    with pytest.raises(ValueError, match=r"Received: model_proto=12"):
        SubwordTokenizer(12)
    with pytest.raises(ValueError, match=r"Received: model_proto='not base64!'"):
        SubwordTokenizer("not base64!")
    # A SentencePiece model with the library's default ids (unk 0, bos 1, eos 2).
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_writer=model, vocab_size=16, minloglevel=2
    )
    with pytest.raises(ValueError, match=r"reserve the package's ids.*ids \(-1, 0, 1, 2\)"):
        SubwordTokenizer(model.getvalue())
    with pytest.raises(
        ValueError, match=r"`inputs` must be a string tensor .*Received: inputs.shape"
    ):
        tokenizer.tokenize(tf.constant([["a", "b"]]))
    with pytest.raises(ValueError, match=r"`ids` must be an integer tensor .*dtype=float32"):
        tokenizer.detokenize(tf.constant([1.0]))


@pytest.fixture(scope="module")
def exported(tokenizer, tmp_path_factory):
    """A tiny model's text translation with subword tokenizers, as a SavedModel."""
    model = helpers.tiny_transformer(VOCABULARY_SIZE)
    generator = Generator(model, max_new_tokens=8)
    translator = export.text_translation_function(generator, tokenizer, tokenizer)
    path = str(tmp_path_factory.mktemp("subword") / "saved_model")
    export.export_saved_model(model, path, text_translator=translator)
    return {"path": path, "generator": generator}


def test_saved_model_translates_like_python_after_importing_tensorflow_text(
    exported, tokenizer, tmp_path
):
    script = f"""
import json
import tensorflow as tf
try:
    tf.saved_model.load({exported["path"]!r})
    print("LOADED_WITHOUT_TENSORFLOW_TEXT")
except Exception as error:
    print("NEEDS_TENSORFLOW_TEXT" if "not registered" in str(error) else repr(error))
import tensorflow_text
loaded = tf.saved_model.load({exported["path"]!r})
result = loaded.signatures["translate"](text=tf.constant({TEXTS!r}))
print(json.dumps([t.decode("utf-8") for t in result["translation"].numpy()]))
print(json.dumps(result["token_ids"].numpy().tolist()))
"""
    lines = helpers.run_python([], script, cwd=tmp_path).splitlines()
    assert lines[-3] == "NEEDS_TENSORFLOW_TEXT"
    translations, token_ids = json.loads(lines[-2]), json.loads(lines[-1])
    expected_ids = keras.ops.convert_to_numpy(
        exported["generator"].generate(tokenizer(tf.constant(TEXTS)))
    )
    np.testing.assert_array_equal(np.array(token_ids), expected_ids)
    expected = [t.decode("utf-8") for t in tokenizer.detokenize(expected_ids).numpy()]
    assert translations == expected
    # The untrained model still produces text, so the comparison is not vacuous.
    assert any(translations)


def test_data_imports_without_the_subword_extra(tmp_path):
    """Without sentencepiece/tensorflow-text, `data` imports; `data.subword` says what to install."""
    script = """
import sys
sys.modules["sentencepiece"] = None  # makes `import sentencepiece` fail
sys.modules["tensorflow_text"] = None
import keras_transformer_layers.data
print("DATA_IMPORTED")
try:
    import keras_transformer_layers.data.subword
except ModuleNotFoundError as error:
    print(error.name, "|", error)
"""
    repository = str(pathlib.Path(__file__).resolve().parents[1])
    lines = helpers.run_python([], script, cwd=tmp_path, env_extra={"PYTHONPATH": repository})
    lines = lines.splitlines()
    assert lines[-2] == "DATA_IMPORTED"
    assert lines[-1].startswith("sentencepiece | ")
    assert 'pip install ".[subword]"' in lines[-1]
