"""`Seq2SeqTransformer`, `TransformerLM` and `CachedDecoding`: the cached interface equals the full model."""

import functools
import math
import pathlib

import keras
import numpy as np
import pytest

import keras_transformer_layers as ktl
from keras_transformer_layers.models import DecodingSpec
from keras_transformer_layers.training import MaskedAccuracy
from keras_transformer_layers.training import MaskedSparseCategoricalCrossentropy

pytestmark = pytest.mark.backend_neutral

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
# The sizes of the fixture files, so that JAX compiles each op for few shapes.
SMALL = {"num_layers": 2, "model_dim": 8, "num_heads": 2, "intermediate_dim": 16}
# Sources of different lengths (right-padded), targets of different lengths.
SOURCE = np.array([[5, 6, 7, 0, 0], [8, 9, 10, 11, 12]], "int32")
TARGET = np.array([[2, 4, 5, 6, 0, 0], [2, 7, 8, 9, 10, 11]], "int32")
REAL = TARGET != 0
TF_ONLY = pytest.mark.skipif(
    keras.config.backend() != "tensorflow", reason="TensorFlow-only: tf.function and XLA"
)
JAX_ONLY = pytest.mark.skipif(keras.config.backend() != "jax", reason="JAX-only: jax.jit")


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _seq2seq(**kwargs):
    return ktl.Seq2SeqTransformer(20, 24, **{**SMALL, **kwargs})


def _lm(**kwargs):
    return ktl.TransformerLM(24, **{**SMALL, **kwargs})


def _full_logits(model, interface=None):
    """Logits of the full forward pass (teacher forcing) on SOURCE/TARGET."""
    if (interface or model).decoding_spec.is_encoder_decoder:
        return _numpy(model({"encoder_inputs": SOURCE, "decoder_inputs": TARGET}))
    return _numpy(model(TARGET))


def _cached_logits(interface, prefill=1, step=None, encode=None, index=int):
    """Logits of the cached interface: `prefill` tokens at once, then one token a step.

    `step` and `encode` replace `call_decoder_with_cache` and `call_encoder`
    (e.g. by compiled versions); `index` turns the Python position into what
    `step` takes (e.g. a tensor, so a compiled step is traced once).
    """
    step = step or interface.call_decoder_with_cache
    encode = encode or interface.call_encoder
    state = encode(SOURCE) if interface.decoding_spec.is_encoder_decoder else {}
    cache = interface.initial_cache(TARGET.shape[0], TARGET.shape[1])
    logits, cache = step(TARGET[:, :prefill], index(0), cache, state)
    outputs = [_numpy(logits)]
    for position in range(prefill, TARGET.shape[1]):
        logits, cache = step(TARGET[:, position : position + 1], index(position), cache, state)
        outputs.append(_numpy(logits))
    return np.concatenate(outputs, axis=1)  # (batch, target_len, logits_size)


def _assert_equal_at_real_positions(cached, full, atol=1e-5):
    assert cached.shape == full.shape
    assert cached.dtype == np.float32
    np.testing.assert_allclose(cached[REAL], full[REAL], atol=atol)


BUILDERS = {"seq2seq": _seq2seq, "lm": _lm}


# --- The cached interface equals the full model ------------------------------------------


@pytest.mark.parametrize("normalize_first", [False, True], ids=["post_norm", "pre_norm"])
@pytest.mark.parametrize("kind", sorted(BUILDERS))
@pytest.mark.parametrize("prefill", [1, 3], ids=["stepwise", "prefill3"])
def test_cached_steps_give_the_full_model_logits_at_every_position(kind, normalize_first, prefill):
    model = BUILDERS[kind](normalize_first=normalize_first)
    full = _full_logits(model)
    _assert_equal_at_real_positions(_cached_logits(model, prefill=prefill), full)
    # The whole target as one prefill call is the full pass too.
    _assert_equal_at_real_positions(_cached_logits(model, prefill=TARGET.shape[1]), full)


def test_padded_source_positions_change_no_cached_logit():
    model = _seq2seq()
    reference = _cached_logits(model)
    longer = np.pad(SOURCE, ((0, 0), (0, 3)))
    state = model.call_encoder(longer)
    np.testing.assert_array_equal(_numpy(state["source_mask"]), longer != 0)
    cache = model.initial_cache(2, TARGET.shape[1])
    logits, _ = model.call_decoder_with_cache(TARGET, 0, cache, state)
    _assert_equal_at_real_positions(_numpy(logits), reference)


@TF_ONLY
@pytest.mark.parametrize("jit_compile", [False, True], ids=["tf_function", "xla"])
@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_cached_steps_equal_the_full_model_under_tf_function(kind, jit_compile):
    import tensorflow as tf

    model = BUILDERS[kind]()
    step = tf.function(model.call_decoder_with_cache, jit_compile=jit_compile)
    encode = tf.function(model.call_encoder, jit_compile=jit_compile)
    cached = _cached_logits(model, prefill=2, step=step, encode=encode, index=tf.constant)
    _assert_equal_at_real_positions(cached, _full_logits(model))


@JAX_ONLY
@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_cached_steps_equal_the_full_model_under_jax_jit(kind):
    import jax
    import jax.numpy as jnp

    model = BUILDERS[kind]()
    step = jax.jit(model.call_decoder_with_cache)
    encode = jax.jit(model.call_encoder)
    cached = _cached_logits(model, prefill=2, step=step, encode=encode, index=jnp.int32)
    _assert_equal_at_real_positions(cached, _full_logits(model))


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_mixed_float16_logits_are_float32_and_cached_steps_stay_close(kind):
    keras.config.set_dtype_policy("mixed_float16")
    model = BUILDERS[kind]()
    assert model.decoder.compute_dtype == "float16"
    assert model.decoder_embedding.compute_dtype == "float16"
    full = _full_logits(model)
    assert full.dtype == np.float32
    assert all(
        keras.backend.standardize_dtype(cache.dtype) == "float16"
        for cache in model.initial_cache(2, 4)
    )
    cached = _cached_logits(model, prefill=2)
    assert np.isfinite(cached).all()
    # float16 keeps ~3 decimal digits; the logits here are O(1).
    _assert_equal_at_real_positions(cached, full, atol=2e-2)


# --- The interface's parts -----------------------------------------------------------------


def test_decoding_spec_describes_each_model():
    assert _seq2seq().decoding_spec == DecodingSpec(
        is_encoder_decoder=True,
        source_vocabulary_size=20,
        max_source_length=None,
        target_vocabulary_size=24,
        logits_size=24,
        max_target_length=None,
        masks_padding=True,
        masks_source_padding=True,
    )
    assert _lm().decoding_spec == DecodingSpec(
        is_encoder_decoder=False,
        source_vocabulary_size=None,
        max_source_length=None,
        target_vocabulary_size=24,
        logits_size=24,
        max_target_length=None,
        masks_padding=True,
        masks_source_padding=False,
    )


def test_encoder_state_and_initial_cache_shapes():
    model = _seq2seq()
    state = model.call_encoder(SOURCE)
    assert sorted(state) == ["cross_attention_cache", "source_mask"]
    np.testing.assert_array_equal(_numpy(state["source_mask"]), SOURCE != 0)
    # One (batch, 2, source_len, num_heads, key_dim) tensor per decoder block.
    cross = state["cross_attention_cache"]
    assert isinstance(cross, tuple) and len(cross) == 2
    assert all(tuple(block.shape) == (2, 2, 5, 2, 4) for block in cross)
    # One (batch, 2, max_length, num_heads, key_dim) tensor per decoder block.
    cache = model.initial_cache(3, 7)
    assert isinstance(cache, tuple) and len(cache) == 2
    assert all(_numpy(block).shape == (3, 2, 7, 2, 4) for block in cache)
    assert not any(_numpy(block).any() for block in cache)
    assert _lm().call_encoder(SOURCE) == {}


def test_cached_step_writes_only_its_positions_into_the_cache():
    model = _lm()
    cache = model.initial_cache(2, 6)
    _, cache = model.call_decoder_with_cache(TARGET[:, :2], 0, cache, {})
    _, cache = model.call_decoder_with_cache(TARGET[:, 2:3], 2, cache, {})
    cache = np.stack([_numpy(block) for block in cache], axis=1)
    assert np.abs(cache[:, :, :, :3]).sum(axis=(0, 1, 2, 4, 5)).min() > 0
    assert not cache[:, :, :, 3:].any()


def test_a_cache_not_in_the_per_block_form_is_refused():
    model = _lm()
    cache = model.initial_cache(*TARGET.shape)
    with pytest.raises(ValueError, match=r"tuple of num_layers=2 tensors.*a tuple of 1 tensors"):
        model.call_decoder_with_cache(TARGET[:, :1], 0, cache[:1], {})
    stacked = keras.ops.stack(cache, axis=1)
    with pytest.raises(ValueError, match=r"tuple of num_layers=2 tensors.*of shape \(2, 2, 2, 6"):
        model.call_decoder_with_cache(TARGET[:, :1], 0, stacked, {})


# Every special id of `keras_transformer_layers.tokens` (0 padding, 1 unknown,
# 2 start, 3 end) in the fed prefix, at the start, inside and at the end.
SPECIAL_TARGETS = np.array(
    [[2, 5, 0, 6, 7, 3], [0, 1, 2, 3, 4, 0], [2, 3, 1, 0, 0, 5], [2, 4, 5, 6, 0, 0]], "int32"
)


@pytest.mark.parametrize("prefill", [1, 3], ids=["stepwise", "prefill3"])
@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_cached_steps_equal_the_full_model_with_every_special_id_in_the_prefix(kind, prefill):
    # Padding inside a sequence is masked by the full model for every later
    # position; the cache records it, so the cached steps give the same
    # logits at every position, padded ones included.
    model = BUILDERS[kind]()
    source = np.array([[5, 6, 7, 0, 0], [8, 9, 10, 11, 12], [1, 3, 2, 0, 0], [4, 0, 0, 0, 0]])
    if kind == "seq2seq":
        full = _numpy(model({"encoder_inputs": source, "decoder_inputs": SPECIAL_TARGETS}))
        state = model.call_encoder(source)
    else:
        full, state = _numpy(model(SPECIAL_TARGETS)), {}
    cache = model.initial_cache(*SPECIAL_TARGETS.shape)
    logits, cache = model.call_decoder_with_cache(SPECIAL_TARGETS[:, :prefill], 0, cache, state)
    outputs = [_numpy(logits)]
    for position in range(prefill, SPECIAL_TARGETS.shape[1]):
        token = SPECIAL_TARGETS[:, position : position + 1]
        logits, cache = model.call_decoder_with_cache(token, position, cache, state)
        outputs.append(_numpy(logits))
    np.testing.assert_allclose(np.concatenate(outputs, axis=1), full, atol=1e-5)


# --- Model classes: layers, config, saving --------------------------------------------------


def test_seq2seq_layers_inputs_and_attributes():
    model = ktl.build_transformer(20, 24, **SMALL)
    assert isinstance(model, ktl.Seq2SeqTransformer)
    assert sorted(t.name for t in model.inputs) == ["decoder_inputs", "encoder_inputs"]
    assert all(tuple(t.shape) == (None, None) for t in model.inputs)
    assert all(t.dtype == "int32" for t in model.inputs)
    names = {layer.name for layer in model.layers} - {"encoder_inputs", "decoder_inputs"}
    # `not_equal` is the source padding mask Keras computes in the graph.
    assert {name for name in names if not name.startswith("not_equal")} == {
        "encoder_embedding",
        "encoder_embedding_dropout",
        "encoder",
        "decoder_embedding",
        "decoder_embedding_dropout",
        "decoder",
        "logits",
    }
    for name, layer in (
        ("encoder_embedding", model.encoder_embedding),
        ("encoder", model.encoder),
        ("decoder_embedding", model.decoder_embedding),
        ("decoder", model.decoder),
        ("logits", model.logits_layer),
    ):
        assert model.get_layer(name) is layer
    assert model.logits_layer.dtype_policy.name == "float32"


def test_lm_layers_inputs_and_attributes():
    model = ktl.build_transformer_lm(24, **SMALL)
    assert isinstance(model, ktl.TransformerLM)
    assert [t.name for t in model.inputs] == ["token_ids"]
    assert tuple(model.inputs[0].shape) == (None, None)
    assert model.inputs[0].dtype == "int32"
    assert model.encoder is None and model.encoder_embedding is None
    assert model.get_layer("embedding") is model.decoder_embedding
    assert model.get_layer("decoder") is model.decoder
    assert model.get_layer("logits") is model.logits_layer
    assert model.get_layer("embedding_dropout").rate == 0.1
    assert model.decoder.blocks[0].cross_attention is None


def test_lm_is_causal_and_padding_masks_the_loss():
    model = _lm()
    reference = _numpy(model(TARGET))
    for t in range(1, TARGET.shape[1]):
        changed = TARGET.copy()
        changed[1, t] = 20
        logits = _numpy(model(changed))
        np.testing.assert_allclose(logits[1, :t], reference[1, :t], atol=1e-5)
        assert np.abs(logits[1, t] - reference[1, t]).max() > 1e-4
    assert model.outputs[0]._keras_mask is not None


def _functional_transformer_as_before(source_vocabulary_size, target_vocabulary_size, **kwargs):
    """The plain functional model `build_transformer` returned before the class."""
    dropout, model_dim = kwargs.pop("dropout", 0.1), kwargs.pop("model_dim")
    stack = {**kwargs, "dropout": dropout}
    encoder_inputs = keras.Input((None,), dtype="int32", name="encoder_inputs")
    decoder_inputs = keras.Input((None,), dtype="int32", name="decoder_inputs")
    x = ktl.PositionalEmbedding(source_vocabulary_size, model_dim)(encoder_inputs)
    x = keras.layers.Dropout(dropout)(x)
    encoder_outputs = ktl.TransformerEncoder(**stack)(x)
    y = ktl.PositionalEmbedding(target_vocabulary_size, model_dim)(decoder_inputs)
    y = keras.layers.Dropout(dropout)(y)
    y = ktl.TransformerDecoder(**stack)(y, encoder_outputs)
    logits = keras.layers.Dense(target_vocabulary_size, dtype="float32")(y)
    return keras.Model({"encoder_inputs": encoder_inputs, "decoder_inputs": decoder_inputs}, logits)


def test_a_seeded_seq2seq_starts_from_the_weights_of_the_functional_model_before():
    keras.utils.set_random_seed(7)
    before = _functional_transformer_as_before(20, 24, **SMALL)
    keras.utils.set_random_seed(7)
    model = ktl.build_transformer(20, 24, **SMALL)
    assert len(model.weights) == len(before.weights)
    for new, old in zip(model.weights, before.weights, strict=True):
        np.testing.assert_array_equal(_numpy(new), _numpy(old), err_msg=new.path)


SEQ2SEQ_CONFIG = {
    "source_vocabulary_size": 20,
    "target_vocabulary_size": 24,
    "num_layers": 2,
    "model_dim": 8,
    "num_heads": 2,
    "intermediate_dim": 16,
    "dropout": 0.2,
    "activation": "gelu",
    "layer_norm_epsilon": 1e-5,
    "normalize_first": True,
    "max_wavelength": 500,
}
LM_CONFIG = {key: value for key, value in SEQ2SEQ_CONFIG.items() if "source" not in key}
LM_CONFIG["vocabulary_size"] = LM_CONFIG.pop("target_vocabulary_size")
CONFIGS = {
    "seq2seq": (ktl.Seq2SeqTransformer, SEQ2SEQ_CONFIG),
    "lm": (ktl.TransformerLM, LM_CONFIG),
}


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_get_config_holds_the_hyperparameters_and_from_config_rebuilds(kind):
    cls, arguments = CONFIGS[kind]
    model = cls(**arguments, name="my_model")
    config = model.get_config()
    assert {key: config[key] for key in arguments} == arguments
    assert config["name"] == "my_model"
    assert keras.dtype_policies.get(config["dtype"]).name == "float32"
    assert model.decoder.activation is keras.activations.gelu
    assert (model.decoder.dropout, model.decoder.layer_norm_epsilon) == (0.2, 1e-5)
    assert model.decoder_embedding.max_wavelength == 500
    rebuilt = cls.from_config(config)
    assert type(rebuilt) is cls and rebuilt.get_config() == config
    rebuilt.set_weights(model.get_weights())
    np.testing.assert_allclose(_full_logits(rebuilt), _full_logits(model), atol=1e-6)


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_keras_file_round_trips_to_the_same_class(kind, tmp_path):
    model = BUILDERS[kind](normalize_first=True)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert type(restored) is type(model)
    assert restored.get_config() == model.get_config()
    full = _full_logits(model)
    np.testing.assert_allclose(_full_logits(restored), full, atol=1e-6)
    _assert_equal_at_real_positions(_cached_logits(restored, prefill=2), full)


def test_mixed_precision_model_reloads_in_its_policy(tmp_path):
    keras.config.set_dtype_policy("mixed_float16")
    model = _lm()
    model.save(tmp_path / "lm.keras")
    keras.config.set_dtype_policy("float32")
    restored = keras.models.load_model(tmp_path / "lm.keras")
    assert restored.decoder.compute_dtype == "float16"
    assert restored.logits_layer.compute_dtype == "float32"
    np.testing.assert_allclose(_full_logits(restored), _full_logits(model), atol=1e-6)


@pytest.mark.parametrize("kind", ["seq2seq", "lm"])
def test_file_saved_by_the_class_on_tensorflow_loads_with_the_same_outputs(kind):
    io = np.load(FIXTURES / "model_io.npz")
    name = {"seq2seq": "seq2seq_transformer", "lm": "transformer_lm"}[kind]
    model = keras.models.load_model(FIXTURES / f"{name}.keras")
    assert type(model) is {"seq2seq": ktl.Seq2SeqTransformer, "lm": ktl.TransformerLM}[kind]
    np.testing.assert_array_equal(io["encoder_inputs"], SOURCE)
    np.testing.assert_array_equal(io["decoder_inputs"], TARGET)
    expected = io[f"{kind}_logits"]
    np.testing.assert_allclose(_full_logits(model), expected, atol=1e-5)
    _assert_equal_at_real_positions(_cached_logits(model, prefill=2), expected)


def test_clone_model_and_from_config_copy_the_model():
    model = _seq2seq()
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(_full_logits(clone, model), _full_logits(model), atol=1e-6)
    # `clone_model` gives a plain functional model; `from_config` keeps the class.
    copy = ktl.Seq2SeqTransformer.from_config(model.get_config())
    assert isinstance(copy, ktl.Seq2SeqTransformer)


def test_lm_fits_and_evaluates_with_the_package_loss_and_metric():
    # `build_transformer` models fit with them in test_training.py.
    model = _lm(dropout=0.0)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=MaskedSparseCategoricalCrossentropy(label_smoothing=0.0),
        metrics=[MaskedAccuracy()],
        # On TensorFlow, XLA compilation would take most of the test's time.
        jit_compile=keras.config.backend() == "jax",
    )
    # Next-token labels; 0 (padding) is masked out of the loss and accuracy.
    labels = np.array([[4, 5, 6, 3, 0, 0], [7, 8, 9, 10, 11, 3]], "int32")
    history = model.fit(TARGET, labels, epochs=5, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    # Against NumPy on the model's predictions, over the 10 real labels only.
    logits = _numpy(model(TARGET)).astype("float64")
    log_probabilities = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    real = labels != 0
    chosen = np.take_along_axis(log_probabilities, labels[..., None], -1)[..., 0]
    results = model.evaluate(TARGET, labels, verbose=0, return_dict=True)
    np.testing.assert_allclose(results["loss"], -chosen[real].mean(), rtol=1e-5)
    np.testing.assert_allclose(
        results["masked_accuracy"], (logits.argmax(-1) == labels)[real].mean(), rtol=1e-6
    )


def _counting(function, calls):
    """`function`, appending its arguments to `calls` at each call (a trace, in a compiled step)."""

    def counted(*args):
        calls.append(args)
        return function(*args)

    return counted


@pytest.mark.parametrize("entry, kind", [("fit", "seq2seq"), ("train_on_batch", "lm")])
def test_the_first_training_call_traces_the_step_once_and_trains_as_keras_does(entry, kind):
    """The optimizer is built before the step is traced; the training is Keras' own."""
    if kind == "seq2seq":
        inputs = {"encoder_inputs": SOURCE, "decoder_inputs": TARGET}
    else:
        inputs = TARGET
    labels = np.array([[4, 5, 6, 3, 0, 0], [7, 8, 9, 10, 11, 3]], "int32")
    losses = {}
    for way in ("ours", "keras"):
        keras.utils.set_random_seed(0)
        model = BUILDERS[kind](dropout=0.0, num_layers=1)
        model.compile(
            optimizer=keras.optimizers.Adam(1e-2),
            loss=MaskedSparseCategoricalCrossentropy(),
            jit_compile=keras.config.backend() == "jax",  # XLA would take most of the time on TF
        )
        traces = []
        model.train_step = _counting(model.train_step, traces)
        # `keras.Model`'s method runs Keras' own training, without the model class's overrides.
        train = getattr(model, entry) if way == "ours" else getattr(keras.Model, entry)
        train = train if way == "ours" else functools.partial(train, model)
        if entry == "fit":
            losses[way] = train(inputs, labels, epochs=3, verbose=0).history["loss"]
        else:
            losses[way] = [float(train(inputs, labels)) for _ in range(3)]
        if way == "ours":
            assert len(traces) == 1
    assert losses["ours"][-1] < losses["ours"][0]
    np.testing.assert_array_equal(losses["ours"], losses["keras"])


# --- Float ids are refused, not truncated -------------------------------------------------


def _float_ids_cases(kind):
    """(model, inputs with float ids in `name`, integer labels, name) for a model kind."""
    if kind == "seq2seq":
        inputs = {"encoder_inputs": SOURCE + 0.7, "decoder_inputs": TARGET}
        return _seq2seq(dropout=0.0), inputs, TARGET, "encoder_inputs"
    return _lm(dropout=0.0), TARGET + 0.7, TARGET, "token_ids"


@pytest.mark.parametrize("kind", ["seq2seq", "lm"])
def test_float_ids_are_refused_in_every_entry_point(kind):
    # Keras' functional model casts its inputs to int32 before any layer sees
    # them: 5.7 became 5, and the model gave the logits of the integer ids.
    model, inputs, labels, name = _float_ids_cases(kind)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    match = rf"`{name}` must be an integer array or tensor of token ids[\s\S]*Received: {name}.dtype=float"
    expected = _numpy(model(keras.tree.map_structure(lambda x: x.astype("int32"), inputs)))
    for entry_point in (
        lambda: model(inputs),
        lambda: model(keras.tree.map_structure(keras.ops.convert_to_tensor, inputs)),
        lambda: model.predict(inputs, verbose=0),
        lambda: model.fit(inputs, labels, verbose=0),
        lambda: model.evaluate(inputs, labels, verbose=0),
        lambda: model.predict_on_batch(inputs),
        lambda: model.train_on_batch(inputs, labels),
        lambda: model.test_on_batch(inputs, labels),
    ):
        with pytest.raises(ValueError, match=match):
            entry_point()
    # Refused before a loop starts: the model still works (on JAX, an error
    # inside Keras' loop left its variables emptied).
    integers = keras.tree.map_structure(lambda x: np.asarray(x, "int32"), inputs)
    np.testing.assert_allclose(model.predict(integers, verbose=0), expected, atol=1e-5)
    # Inside a functional model, on float inputs: refused when it is built.
    symbolic = keras.tree.map_structure(
        lambda x: keras.Input((None,), dtype=str(x.dtype), name=None), inputs
    )
    with pytest.raises(ValueError, match=match):
        model(symbolic)
    # Integer ids of any width are taken.
    unsigned = keras.tree.map_structure(lambda x: np.asarray(x, "uint8"), inputs)
    np.testing.assert_array_equal(_numpy(model(unsigned)), expected)


# --- A functional model composed by hand ---------------------------------------------------


def _hand_built_seq2seq():
    """Learned target positions and an unmasked source: not what the builders make."""
    encoder_inputs = keras.Input((None,), dtype="int32", name="encoder_inputs")
    decoder_inputs = keras.Input((None,), dtype="int32", name="decoder_inputs")
    encoder_embedding = ktl.PositionalEmbedding(20, 8, mask_zero=False)
    decoder_embedding = ktl.PositionalEmbedding(24, 8, learned_positions=True, sequence_length=6)
    encoder = ktl.TransformerEncoder(num_layers=1, num_heads=2, intermediate_dim=16)
    decoder = ktl.TransformerDecoder(num_layers=2, num_heads=2, intermediate_dim=16)
    logits = keras.layers.Dense(21)
    outputs = logits(
        decoder(decoder_embedding(decoder_inputs), encoder(encoder_embedding(encoder_inputs)))
    )
    model = keras.Model(
        {"encoder_inputs": encoder_inputs, "decoder_inputs": decoder_inputs}, outputs
    )
    interface = ktl.CachedDecoding(
        decoder_embedding=decoder_embedding,
        decoder=decoder,
        logits=logits,
        encoder_embedding=encoder_embedding,
        encoder=encoder,
    )
    return model, interface


def _hand_built_lm():
    inputs = keras.Input((None,), dtype="int32")
    embedding = ktl.PositionalEmbedding(24, 8)
    decoder = ktl.TransformerDecoder(num_layers=2, num_heads=2, intermediate_dim=16)
    logits = keras.layers.Dense(24)
    model = keras.Model(inputs, logits(decoder(embedding(inputs))))
    return model, ktl.CachedDecoding(decoder_embedding=embedding, decoder=decoder, logits=logits)


@pytest.mark.parametrize("build", [_hand_built_seq2seq, _hand_built_lm], ids=["seq2seq", "lm"])
def test_cached_decoding_of_a_hand_built_model_equals_the_model(build):
    model, interface = build()
    full = _full_logits(model, interface)
    _assert_equal_at_real_positions(_cached_logits(interface), full)
    _assert_equal_at_real_positions(_cached_logits(interface, prefill=3), full)


def test_hand_built_decoding_spec_and_unmasked_source():
    model, interface = _hand_built_seq2seq()
    assert interface.decoding_spec == DecodingSpec(
        is_encoder_decoder=True,
        source_vocabulary_size=20,
        max_source_length=None,
        target_vocabulary_size=24,
        logits_size=21,
        max_target_length=6,
        masks_padding=True,
        masks_source_padding=False,
    )
    # mask_zero=False: every source position is real, id 0 included.
    assert _numpy(interface.call_encoder(SOURCE)["source_mask"]).all()


def test_cached_decoding_shares_the_model_weights():
    model, interface = _hand_built_lm()
    before = _cached_logits(interface)
    model.set_weights([w * 1.5 for w in model.get_weights()])
    after = _cached_logits(interface)
    assert np.abs(after - before).max() > 1e-3
    _assert_equal_at_real_positions(after, _full_logits(model, interface))


# --- Bad arguments --------------------------------------------------------------------------


def _built_layers(cross_attention):
    embedding = ktl.PositionalEmbedding(10, 8)
    encoder = ktl.TransformerEncoder(num_layers=1, num_heads=2, intermediate_dim=8)
    decoder = ktl.TransformerDecoder(num_layers=1, num_heads=2, intermediate_dim=8)
    logits = keras.layers.Dense(10)
    x = embedding(np.array([[3, 4]]))
    logits(decoder(x, encoder(x)) if cross_attention else decoder(x))
    return {"embedding": embedding, "encoder": encoder, "decoder": decoder, "logits": logits}


def test_cached_decoding_rejects_wrong_layers():
    lm = _built_layers(cross_attention=False)
    s2s = _built_layers(cross_attention=True)
    common = {
        "decoder_embedding": lm["embedding"],
        "decoder": lm["decoder"],
        "logits": lm["logits"],
    }
    keras_embedding = keras.layers.Embedding(10, 8)
    with pytest.raises(
        ValueError,
        match=r"`decoder_embedding` must be .*PositionalEmbedding.*Received: decoder_embedding=<Embedding",
    ):
        ktl.CachedDecoding(**{**common, "decoder_embedding": keras_embedding})
    with pytest.raises(
        ValueError,
        match=r"`decoder` must be .*TransformerDecoder.*Received: decoder=<TransformerEncoder",
    ):
        ktl.CachedDecoding(**{**common, "decoder": s2s["encoder"]})
    with pytest.raises(
        ValueError, match=r"`logits` must be a Keras `Layer`.*Received: logits=None"
    ):
        ktl.CachedDecoding(**{**common, "logits": None})
    with pytest.raises(
        ValueError, match=r"`encoder` must be .*or None.*Received: encoder='encoder'"
    ):
        ktl.CachedDecoding(**common, encoder_embedding=lm["embedding"], encoder="encoder")
    with pytest.raises(
        ValueError,
        match=r"`encoder_embedding` and `encoder` must be given together.*Received: encoder_embedding=None, encoder=<TransformerEncoder",
    ):
        ktl.CachedDecoding(**common, encoder=s2s["encoder"])
    unbuilt = ktl.TransformerDecoder(num_layers=1, num_heads=2, intermediate_dim=8)
    with pytest.raises(
        ValueError, match=r"`decoder` must be a built layer.*Received: decoder=<TransformerDecoder"
    ):
        ktl.CachedDecoding(**{**common, "decoder": unbuilt})
    with pytest.raises(
        ValueError, match=r"`logits` must be a built layer.*Received: logits=<Dense"
    ):
        ktl.CachedDecoding(**{**common, "logits": keras.layers.Dense(10)})
    with pytest.raises(
        ValueError, match=r"`encoder` must be given exactly when.*built without cross-attention"
    ):
        ktl.CachedDecoding(**common, encoder_embedding=s2s["embedding"], encoder=s2s["encoder"])
    with pytest.raises(
        ValueError,
        match=r"`encoder` must be given exactly when.*Received: encoder=None with a decoder built with cross-attention",
    ):
        ktl.CachedDecoding(
            decoder_embedding=s2s["embedding"], decoder=s2s["decoder"], logits=s2s["logits"]
        )


BAD_ARGUMENTS = [
    ("num_layers", 0, "`num_layers`.*Received: num_layers=0"),
    ("model_dim", 2.5, r"`model_dim`.*Received: model_dim=2\.5"),
    ("num_heads", True, "`num_heads`.*Received: num_heads=True"),
    ("intermediate_dim", -1, "`intermediate_dim`.*Received: intermediate_dim=-1"),
    ("dropout", math.nan, "`dropout`.*Received: dropout=nan"),
    ("activation", "nope", "`activation`.*Received: activation='nope'"),
    ("layer_norm_epsilon", math.inf, "`layer_norm_epsilon`.*Received: layer_norm_epsilon=inf"),
    ("normalize_first", "no", "`normalize_first`.*Received: normalize_first='no'"),
    ("max_wavelength", 0, "`max_wavelength`.*Received: max_wavelength=0"),
    ("num_heads", 3, "divisible by `num_heads`.*Received: model_dim=8, num_heads=3"),
]


@pytest.mark.parametrize(
    "name, value, match", BAD_ARGUMENTS, ids=[f"{n}={v}" for n, v, _ in BAD_ARGUMENTS]
)
@pytest.mark.parametrize(
    "builder",
    [ktl.build_transformer, ktl.Seq2SeqTransformer, ktl.build_transformer_lm, ktl.TransformerLM],
)
def test_builders_reject_bad_arguments(builder, name, value, match):
    vocabularies = (20, 20) if builder in (ktl.build_transformer, ktl.Seq2SeqTransformer) else (20,)
    with pytest.raises(ValueError, match=match):
        builder(*vocabularies, **{**SMALL, name: value})


@pytest.mark.parametrize(
    "builder, arguments, match",
    [
        (ktl.build_transformer_lm, (0,), "`vocabulary_size`.*Received: vocabulary_size=0"),
        (ktl.TransformerLM, ("40",), "`vocabulary_size`.*Received: vocabulary_size='40'"),
        (
            ktl.build_transformer,
            (0, 5),
            "`source_vocabulary_size`.*Received: source_vocabulary_size=0",
        ),
        (
            ktl.Seq2SeqTransformer,
            (5, None),
            "`target_vocabulary_size`.*Received: target_vocabulary_size=None",
        ),
    ],
)
def test_builders_reject_bad_vocabulary_sizes(builder, arguments, match):
    with pytest.raises(ValueError, match=match):
        builder(*arguments, **SMALL)


@pytest.mark.parametrize(
    "cls, vocabularies", [(ktl.Seq2SeqTransformer, (20, 20)), (ktl.TransformerLM, (20,))]
)
def test_model_classes_reject_an_unknown_dtype(cls, vocabularies):
    with pytest.raises(ValueError, match="`dtype` must be .*Received: dtype='float8_mixed'"):
        cls(*vocabularies, **SMALL, dtype="float8_mixed")
