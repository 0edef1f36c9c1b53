"""String-in, string-out translation inside the graph (core TF string ops only)."""

import keras
import tensorflow as tf

from keras_transformer_layers import _validation
from keras_transformer_layers.export import _io
from keras_transformer_layers.export.saved_model import ExportSignature


@keras.saving.register_keras_serializable(package="keras_transformer_layers")
class CharacterTokenizer(keras.layers.Layer):
    """A character-level tokenizer made of core TensorFlow string ops.

    Splits UTF-8 strings into characters (`tf.strings.unicode_split`) and maps
    them to ids with `keras.layers.StringLookup`, so a SavedModel that uses it
    runs on stock TensorFlow and TF Serving, with no custom-op library. It is
    the default tokenizer of the text signature; any pair of
    `tokenize`/`detokenize` callables with the same contract can replace it.

    Ids: `0` padding, `1` unknown character, `2` start, `3` end, then the
    characters in the order given.

    Args:
        characters: sequence of distinct single characters, the vocabulary.
        **kwargs: base layer arguments such as `name`.

    Call arguments:
        inputs: string tensor of shape `(batch,)`; same as `tokenize`.

    Returns:
        `tokenize(strings)`: int32 ids `(batch, max_chars)`, padded with 0.
        `detokenize(ids)`: strings `(batch,)`; padding, start, end and unknown
        ids are dropped.

    Example:

    >>> tokenizer = CharacterTokenizer("abc")
    >>> tokenizer.tokenize(tf.constant(["cab", "a"])).numpy().tolist()
    [[6, 4, 5], [4, 0, 0]]
    >>> tokenizer.detokenize(tf.constant([[6, 4, 3]])).numpy().tolist()
    [b'ca']
    """

    pad_id = 0
    unknown_id = 1
    start_id = 2
    end_id = 3
    first_character_id = 4

    def __init__(self, characters, **kwargs):
        super().__init__(**kwargs)
        characters = list(characters)
        if not characters or any(
            not isinstance(c, str) or len(c) != 1 for c in characters
        ) or len(set(characters)) != len(characters):
            raise ValueError(
                "`characters` must be a non-empty sequence of distinct single "
                f"characters. Received: characters={characters!r}"
            )
        self.characters = characters
        vocabulary = ["[START]", "[END]"] + characters
        self.lookup = keras.layers.StringLookup(
            vocabulary=vocabulary, mask_token="", num_oov_indices=1, name="lookup"
        )
        self.inverse_lookup = keras.layers.StringLookup(
            vocabulary=vocabulary,
            mask_token="",
            num_oov_indices=1,
            invert=True,
            name="inverse_lookup",
        )
        # No weights; the lookup tables exist from construction. Marking the
        # layer built lets a SavedModel track it before any call.
        self.built = True

    @property
    def vocabulary_size(self):
        return self.first_character_id + len(self.characters)

    def tokenize(self, strings):
        chars = tf.strings.unicode_split(strings, "UTF-8").to_tensor(
            default_value=""
        )  # (batch, max_chars)
        return tf.cast(self.lookup(chars), tf.int32)

    def detokenize(self, ids):
        ids = tf.cast(ids, tf.int64)
        chars = self.inverse_lookup(ids)  # (batch, length)
        chars = tf.where(ids >= self.first_character_id, chars, "")
        return tf.strings.reduce_join(chars, axis=-1)

    def call(self, inputs):
        return self.tokenize(inputs)

    def get_config(self):
        config = super().get_config()
        config.update({"characters": self.characters})
        return config


def text_translation_function(
    model,
    tokenize,
    detokenize,
    start_id,
    end_id,
    max_output_length,
    pad_id=0,
    encoder_input="encoder_inputs",
    decoder_input="decoder_inputs",
):
    """Greedy string-to-string translation as one in-graph `tf.while_loop`.

    Source strings are tokenized in the graph, the target is generated one
    token at a time into a fixed-shape buffer `(batch, max_output_length + 1)`
    (no Python loop, so it saves as a SavedModel signature), and the ids are
    turned back into strings. Each step reruns the full model on the buffer:
    the decoder is causal, so the logits at step `i` only see tokens `<= i`.
    A row stops at `end_id` (or at `pad_id`, which is never a real token);
    later positions stay padding. Cached decoding from
    `keras_transformer_layers.decoding` can be plugged in through
    `export_saved_model(extra_signatures=...)`.

    Args:
        model: model with int inputs `encoder_input` and `decoder_input`
            returning logits `(batch, target_len, vocab)`.
        tokenize: callable, string tensor `(batch,)` to int ids
            `(batch, source_len)` padded with `pad_id` (for example
            `CharacterTokenizer.tokenize`).
        detokenize: callable, int ids `(batch, length)` to strings `(batch,)`;
            it must drop `start_id`, `end_id` and `pad_id`.
        start_id: int, the first decoder input.
        end_id: int, the id that ends a translation.
        max_output_length: positive int, the most tokens generated.
        pad_id: int, padding id. Defaults to `0`.
        encoder_input: name of the source input. Defaults to `"encoder_inputs"`.
        decoder_input: name of the target input. Defaults to `"decoder_inputs"`.

    Returns:
        An `ExportSignature` for `export_saved_model(text_translator=...)`:
        its function maps a string tensor `(batch,)` to
        `{"translation": strings (batch,), "token_ids": int32 (batch, max_output_length)}`.

    Example:

    ```python
    tokenizer = CharacterTokenizer("abcdefgh")
    translator = text_translation_function(
        model, tokenizer.tokenize, tokenizer.detokenize,
        tokenizer.start_id, tokenizer.end_id, max_output_length=20)
    export_saved_model(model, "/tmp/sm", text_translator=translator)
    ```
    """
    _io.check_model(model)
    _validation.check_positive_int("max_output_length", max_output_length)
    for name, fn in (("tokenize", tokenize), ("detokenize", detokenize)):
        if not callable(fn):
            raise ValueError(f"`{name}` must be callable. Received: {name}={fn!r}")
    length = max_output_length + 1

    def translate(text):
        source = tf.cast(tokenize(text), tf.int32)  # (batch, source_len)
        batch = tf.shape(source)[0]
        tokens = tf.concat(
            [
                tf.fill([batch, 1], tf.constant(start_id, tf.int32)),
                tf.fill([batch, max_output_length], tf.constant(pad_id, tf.int32)),
            ],
            axis=1,
        )  # (batch, max_output_length + 1)
        done = tf.zeros([batch], tf.bool)

        def keep_going(step, tokens, done):
            return tf.logical_and(
                step < max_output_length, tf.logical_not(tf.reduce_all(done))
            )

        def decode_step(step, tokens, done):
            logits = model(
                {encoder_input: source, decoder_input: tokens}, training=False
            )  # (batch, length, vocab)
            next_ids = tf.argmax(
                tf.gather(logits, step, axis=1), axis=-1, output_type=tf.int32
            )  # (batch,)
            next_ids = tf.where(done, tf.constant(pad_id, tf.int32), next_ids)
            done = done | tf.equal(next_ids, end_id) | tf.equal(next_ids, pad_id)
            column = tf.one_hot(step + 1, length, dtype=tf.int32)  # (length,)
            tokens = tokens * (1 - column) + next_ids[:, None] * column
            return step + 1, tokens, done

        _, tokens, _ = tf.while_loop(
            keep_going,
            decode_step,
            (tf.constant(0), tokens, done),
            shape_invariants=(
                tf.TensorShape([]),
                tf.TensorShape([None, length]),
                tf.TensorShape([None]),
            ),
        )
        generated = tokens[:, 1:]  # (batch, max_output_length)
        return {"translation": detokenize(generated), "token_ids": generated}

    # The lookup tables of a tokenizer given as bound methods of a layer or
    # module must be tracked by the SavedModel, or saving fails.
    track = [
        owner
        for owner in (getattr(tokenize, "__self__", None), getattr(detokenize, "__self__", None))
        if isinstance(owner, (keras.layers.Layer, tf.Module))
    ]
    return ExportSignature(
        translate, [tf.TensorSpec([None], tf.string, name="text")], track
    )
