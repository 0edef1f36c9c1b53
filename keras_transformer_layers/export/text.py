"""String-in, string-out translation inside the graph.

With `TextTokenizer` every op is a core TensorFlow op; with the opt-in
`SubwordTokenizer` the SavedModel needs `import tensorflow_text` to load.
"""

import tensorflow as tf

from keras_transformer_layers.export import generation
from keras_transformer_layers.export import saved_model
from keras_transformer_layers.export.saved_model import ExportSignature


def text_translation_function(generator, source_tokenizer, target_tokenizer):
    """Strings in, strings out: tokenize, generate over the KV cache, detokenize.

    The source strings are tokenized in the graph by `source_tokenizer` (a
    `keras_transformer_layers.data.TextTokenizer`, built on
    `tf.strings` ops and `StringLookup`), translated by `generator` (a
    `keras_transformer_layers.generation.Generator` of an encoder-decoder
    model: the encoder once, then one cached decoder step per token inside a
    single `while_loop`), and turned back into strings by
    `target_tokenizer.detokenize`. With `TextTokenizer`s every op is a
    core TensorFlow op, so stock TensorFlow and TensorFlow Serving run the
    signature with no custom-op library and without this package. A sampling
    generator uses its strategy's seed (or 0) in the exported graph.

    A `keras_transformer_layers.data.subword.SubwordTokenizer` (SentencePiece)
    works too, and its model proto is saved in the SavedModel, but its ops come
    from tensorflow-text: the serving process must `import tensorflow_text`
    before `tf.saved_model.load` (stock TensorFlow refuses the file with "Op
    type not registered"), and no TFLite conversion with builtin ops can run
    it; the text translator is SavedModel-only.

    Args:
        generator: a `Generator` around the encoder-decoder model to export.
        source_tokenizer: a `TextTokenizer` (or `SubwordTokenizer`) for the
            source language; called on a `(batch,)` string tensor it returns
            padded ids with start and end ids, as in training.
        target_tokenizer: a `TextTokenizer` (or `SubwordTokenizer`) for the
            target language; its `detokenize` drops padding, start and
            everything from the end id.

    Returns:
        An `ExportSignature` for `export_saved_model(text_translator=...)`: its
        function maps `text`, a string tensor `(batch,)`, to
        `{"translation": strings (batch,), "token_ids": int32 (batch, max_new_tokens)}`.

    Raises:
        ValueError: `generator` is not a `Generator` of an encoder-decoder
            model, or a tokenizer lacks the method used.

    Example:

    ```python
    generator = Generator(model, max_new_tokens=12)
    translator = text_translation_function(generator, source_tokenizer, target_tokenizer)
    export_saved_model(model, "/tmp/sm", text_translator=translator)
    loaded = tf.saved_model.load("/tmp/sm")
    loaded.signatures["translate"](text=tf.constant(["May 5, 1999"]))["translation"]
    ```
    """
    generation.check_encoder_decoder(generator)
    for name, tokenizer, method in (
        ("source_tokenizer", source_tokenizer, "__call__"),
        ("target_tokenizer", target_tokenizer, "detokenize"),
    ):
        if not callable(getattr(tokenizer, method, None)):
            raise ValueError(
                f"`{name}` must be a tokenizer layer with a `{method}` method, such as "
                f"`keras_transformer_layers.data.TextTokenizer`. Received: {name}={tokenizer!r}"
            )
        if not tokenizer.built:
            # The SavedModel tracks the lookup tables, which exist once built.
            tokenizer.build((None,))
    seed = generation.export_seed(generator)
    spec = generator.spec

    def translate(text):
        source_ids = tf.cast(source_tokenizer(text), tf.int32)  # (batch, source_len)
        # A tokenizer with a larger vocabulary than the model's, or a text
        # longer than a learned position table, fails loudly.
        source_ids = saved_model.check_token_ids(
            "source_ids", source_ids, spec.source_vocabulary_size, spec.max_source_length
        )
        token_ids, _ = generator.generate_tensors(
            source_ids, tf.constant(seed, tf.int32)
        )  # (batch, max_new_tokens)
        return {"translation": target_tokenizer.detokenize(token_ids), "token_ids": token_ids}

    return ExportSignature(
        translate,
        [tf.TensorSpec([None], tf.string, name="text")],
        [source_tokenizer, target_tokenizer],
    )
