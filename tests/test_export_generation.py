"""Generation exported as a SavedModel and as TFLite gives the Keras `Generator`'s tokens.

Encoder-decoder (source ids) and decoder-only (prompts of different lengths)
models alike, greedy, beam search and sampling; the exports check their inputs in every
runtime and write like the other exports (path checks, `overwrite`, atomic).
"""

import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

import keras_transformer_layers as ktl
from keras_transformer_layers.export import export_decode_step_tflite
from keras_transformer_layers.export import export_generation_saved_model
from keras_transformer_layers.export import export_generation_tflite
from keras_transformer_layers.export import generation as generation_export
from keras_transformer_layers.export import generation_signatures
from keras_transformer_layers.generation import BeamSearch
from keras_transformer_layers.generation import Generator
from keras_transformer_layers.generation import Sampling
from keras_transformer_layers.tokens import END_ID
from keras_transformer_layers.tokens import START_ID
from tests.generation_fixtures import interface_of  # noqa: F401
from tests.generation_fixtures import small_model  # noqa: F401
from tests.generation_fixtures import sources  # noqa: F401
from tests.generation_fixtures import trained_model  # noqa: F401

MAX_NEW_TOKENS = 10

# Runs in `python -I` (no PYTHONPATH, no cwd on sys.path) with the package
# made unimportable, so only TensorFlow and the SavedModels are used.
_LOAD_AND_GENERATE = """
import json, sys
sys.modules["keras_transformer_layers"] = None
try:
    import keras_transformer_layers
    raise SystemExit("the package must not be importable here")
except ImportError:
    pass
import tensorflow as tf
results = []
for path, name, ids in json.loads(sys.argv[1]):
    serve = tf.saved_model.load(path).signatures["serving_default"]
    outputs = serve(**{name: tf.constant(ids, tf.int32)})
    results.append({key: value.numpy().tolist() for key, value in outputs.items()})
print(json.dumps(results))
"""


def _fresh_process_generate(runs, cwd):
    """`[(path, input name, ids)]` served by `tf.saved_model.load` in a fresh process."""
    result = subprocess.run(
        [sys.executable, "-I", "-c", _LOAD_AND_GENERATE, json.dumps(runs)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _runner(path):
    return Interpreter(model_path=str(path)).get_signature_runner()


def _leftovers(folder):
    return sorted(p for p in os.listdir(folder) if p.startswith(".ktl-export"))


@pytest.fixture(scope="module")
def keras_generation(trained_model):
    generator = Generator(interface_of(trained_model), max_new_tokens=MAX_NEW_TOKENS)
    source = sources(4)
    token_ids, scores = generator.generate(source, return_scores=True)
    return generator, source, token_ids, scores


def test_saved_model_generates_in_a_fresh_process(keras_generation, tmp_path):
    generator, source, token_ids, scores = keras_generation
    report = export_generation_saved_model(generator, tmp_path / "generator", sample_inputs=source)
    assert report["signatures"] == ["decode_step", "encode", "serving_default"]
    assert report["token_agreement"] == 1.0 and report["max_abs_diff"] <= 1e-4
    (outputs,) = _fresh_process_generate(
        [(report["path"], "source_ids", source.tolist())], tmp_path
    )
    np.testing.assert_array_equal(outputs["token_ids"], token_ids)
    np.testing.assert_allclose(outputs["scores"], scores, atol=1e-4)


def test_tflite_while_loop_gives_the_keras_tokens(keras_generation, tmp_path):
    generator, source, token_ids, scores = keras_generation
    report = export_generation_tflite(
        generator, tmp_path / "generate.tflite", batch_size=4, input_len=source.shape[1]
    )
    assert "WHILE" in report["op_names"]
    assert not [op for op in report["op_names"] if op.startswith("CUSTOM")]
    assert report["size_bytes"] == os.path.getsize(tmp_path / "generate.tflite")
    outputs = _runner(report["path"])(source_ids=source)
    np.testing.assert_array_equal(outputs["token_ids"], token_ids)
    np.testing.assert_allclose(outputs["scores"], scores, atol=1e-4)


def test_tflite_single_step_without_control_flow(keras_generation, tmp_path):
    generator, source, token_ids, _ = keras_generation
    source = source[:1]
    report = export_decode_step_tflite(
        generator, tmp_path / "step", batch_size=1, source_len=source.shape[1]
    )
    assert sorted(os.listdir(tmp_path / "step")) == ["decode_step.tflite", "encode.tflite"]
    assert "WHILE" not in report["op_names"]["decode_step"]
    assert "WHILE" not in report["op_names"]["encode"]
    encoded = _runner(report["files"]["encode"])(source_ids=source)
    step = _runner(report["files"]["decode_step"])
    cache, token, generated = encoded["self_attention_cache"], np.array([[START_ID]], "int32"), []
    for index in range(MAX_NEW_TOKENS):  # the caller's loop, as on a delegate
        outputs = step(
            token_ids=token,
            index=np.array(index, "int32"),
            self_attention_cache=cache,
            cross_attention_cache=encoded["cross_attention_cache"],
            source_mask=encoded["source_mask"],
        )
        cache = outputs["self_attention_cache"]
        token = outputs["logits"].argmax(-1).astype("int32")[:, None]
        generated.append(int(token[0, 0]))
        if generated[-1] == END_ID:
            break
    np.testing.assert_array_equal(generated, token_ids[0, : len(generated)])
    assert np.all(token_ids[0, len(generated) :] == 0)


# ---------------------------------------------------------------------------
# Decoder-only: prompts of different lengths, greedy and beam search.

LM_MAX_LENGTH = 9
PROMPTS = np.array([[4, 5, 6, 7], [8, 0, 0, 0], [9, 10, 0, 0]], "int32")


def lm():
    """A hand-built decoder-only model of 12 ids and its `CachedDecoding`.

    The end id's small output bias makes rows end at different steps.
    """
    return small_model(decoder_only=True, favoured=(END_ID,), bias=1.0)


@pytest.fixture(scope="module")
def lm_generators():
    _, interface = lm()
    generators = {
        "greedy": Generator(interface, max_length=LM_MAX_LENGTH),
        "beam": Generator(interface, BeamSearch(num_beams=3), max_length=LM_MAX_LENGTH),
    }
    expected = {
        name: generator.generate(PROMPTS, return_scores=True)
        for name, generator in generators.items()
    }
    return generators, expected


def test_lm_keras_generation_is_not_trivial(lm_generators):
    """The references differ between strategies and rows, and keep the prompts."""
    _, expected = lm_generators
    greedy, beam = expected["greedy"][0], expected["beam"][0]
    assert not np.array_equal(greedy, beam)
    for tokens in (greedy, beam):
        np.testing.assert_array_equal(tokens[:, :4][PROMPTS != 0], PROMPTS[PROMPTS != 0])
        assert len({tuple(row[4:]) for row in tokens}) > 1


def test_lm_saved_models_generate_in_a_fresh_process(lm_generators, tmp_path):
    generators, expected = lm_generators
    runs = []
    for name, generator in generators.items():
        report = export_generation_saved_model(generator, tmp_path / name, sample_inputs=PROMPTS)
        assert report["signatures"] == ["decode_step", "serving_default"]
        assert report["token_agreement"] == 1.0
        runs.append((report["path"], "prompt_ids", PROMPTS.tolist()))
    results = _fresh_process_generate(runs, tmp_path)
    for name, outputs in zip(generators, results, strict=True):
        token_ids, scores = expected[name]
        np.testing.assert_array_equal(outputs["token_ids"], token_ids, err_msg=name)
        np.testing.assert_allclose(outputs["scores"], scores, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("name", ["greedy", "beam"])
def test_lm_tflite_while_loop_gives_the_keras_tokens(lm_generators, tmp_path, name):
    generators, expected = lm_generators
    report = export_generation_tflite(
        generators[name], tmp_path / "lm.tflite", batch_size=3, sample_inputs=PROMPTS
    )
    assert "WHILE" in report["op_names"]
    assert not [op for op in report["op_names"] if op.startswith("CUSTOM")]
    assert report["token_agreement"] == 1.0
    # Any prompt width: the signature runner resizes the input.
    for prompts in (PROMPTS, np.pad(PROMPTS, ((0, 0), (0, 2)))):
        outputs = _runner(report["path"])(prompt_ids=prompts)
        np.testing.assert_array_equal(outputs["token_ids"], expected[name][0])
        np.testing.assert_allclose(outputs["scores"], expected[name][1], atol=1e-4)


def test_lm_decode_step_fed_the_prompt_continues_like_greedy(lm_generators, tmp_path):
    generators, expected = lm_generators
    report = export_decode_step_tflite(generators["greedy"], tmp_path / "step")
    assert os.listdir(tmp_path / "step") == ["decode_step.tflite"]
    assert "WHILE" not in report["op_names"]["decode_step"]
    step = _runner(report["files"]["decode_step"])
    shape = Interpreter(model_path=report["files"]["decode_step"]).get_signature_runner()
    cache = np.zeros(shape.get_input_details()["self_attention_cache"]["shape"], "float32")
    prompt = [4, 5, 6, 7]
    sequence = list(prompt)
    for index in range(LM_MAX_LENGTH - 1):  # the prompt, then greedy choices
        outputs = step(
            token_ids=np.array([[sequence[index]]], "int32"),
            index=np.array(index, "int32"),
            self_attention_cache=cache,
        )
        cache = outputs["self_attention_cache"]
        if index + 1 == len(sequence):
            sequence.append(int(outputs["logits"].argmax(-1)[0]))
            if sequence[-1] == END_ID:
                break
    greedy = expected["greedy"][0][0]
    np.testing.assert_array_equal(sequence, greedy[: len(sequence)])
    assert np.all(greedy[len(sequence) :] == 0)


# Bad prompts: (prompt_ids, what the SavedModel error says).
BAD_PROMPTS = [
    ([[0, 4]], r"at least one token.*row lengths\] \[1\]"),
    ([[4, 0, 5]], r"right-padded with the padding id 0"),
    ([[4, 12]], r"`prompt_ids` must hold token ids in \[0, 12\).*\[12\]"),
    ([[-1, 4]], r"`prompt_ids` must hold token ids in \[0, 12\).*\[-1\]"),
    ([[4] * LM_MAX_LENGTH], rf"shorter than `max_length` \({LM_MAX_LENGTH}\).*\[{LM_MAX_LENGTH}\]"),
]


def test_lm_exports_reject_bad_prompts_in_every_runtime(lm_generators, tmp_path):
    generators, expected = lm_generators
    generator = generators["greedy"]
    saved = export_generation_saved_model(generator, tmp_path / "sm")
    loaded = tf.saved_model.load(saved["path"])
    serve, step = loaded.signatures["serving_default"], loaded.signatures["decode_step"]
    # Padding columns beyond `max_length` are dropped, as in `generate`.
    wide = np.pad(PROMPTS, ((0, 0), (0, LM_MAX_LENGTH)))
    np.testing.assert_array_equal(
        serve(prompt_ids=tf.constant(wide))["token_ids"], expected["greedy"][0]
    )
    runner = _runner(export_generation_tflite(generator, tmp_path / "lm.tflite")["path"])
    for prompt, message in BAD_PROMPTS:
        with pytest.raises(ValueError):  # the Keras generator refuses them too
            generator.generate(np.array(prompt))
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            serve(prompt_ids=tf.constant(prompt, tf.int32))
        # TFLite has no asserts: its GATHER refuses the out-of-range row.
        with pytest.raises(RuntimeError, match="gather index out of bounds"):
            runner(prompt_ids=np.array(prompt, "int32"))
    cache = np.zeros(step.structured_input_signature[1]["self_attention_cache"].shape, "float32")
    for token, index, message in (
        (12, 0, r"`token_ids` must hold token ids in \[0, 12\)"),
        (4, LM_MAX_LENGTH, rf"`index` must be in \[0, {LM_MAX_LENGTH}\)"),
        (4, -1, rf"`index` must be in \[0, {LM_MAX_LENGTH}\)"),
    ):
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            step(
                token_ids=tf.constant([[token]]),
                index=tf.constant(index),
                self_attention_cache=tf.constant(cache),
            )


def test_exported_decode_step_equals_the_full_model_with_special_ids_in_the_prefix(tmp_path):
    # The exported step records padding in the cache as the Keras step does:
    # fed every special id (0 padding inside the prefix, 1, 2, 3), its logits
    # are the full model's at every position (but the excluded ids 0 and 2).
    model, interface = lm()
    generator = Generator(interface, max_length=LM_MAX_LENGTH)
    saved = export_generation_saved_model(generator, tmp_path / "sm")
    step = tf.saved_model.load(saved["path"]).signatures["decode_step"]
    prefix = np.array([[2, 5, 0, 6, 1, 3, 0, 7]], "int32")
    full = keras.ops.convert_to_numpy(model(prefix))[0]  # (length, vocabulary)
    cache = np.zeros(step.structured_input_signature[1]["self_attention_cache"].shape, "float32")
    kept = ~np.isin(np.arange(full.shape[-1]), [0, START_ID])
    for index, token in enumerate(prefix[0]):
        outputs = step(
            token_ids=tf.constant([[token]]),
            index=tf.constant(index),
            self_attention_cache=tf.constant(cache),
        )
        cache = outputs["self_attention_cache"]
        np.testing.assert_allclose(outputs["logits"][0].numpy()[kept], full[index][kept], atol=1e-5)


# ---------------------------------------------------------------------------
# Checks at the export boundary; the padding and start ids are never generated.


@pytest.fixture(scope="module")
def table_generator():
    """Learned position tables of 4 rows, the output bias favouring ids 0 and 2."""
    return Generator(small_model(table=4)[1], max_length=4)


TABLE_SOURCE = np.array([[4, 5, 6, 0], [7, 8, 9, 10]], "int32")


def test_exporters_check_their_arguments(table_generator, lm_generators, tmp_path):
    lm_generator = lm_generators[0]["greedy"]
    cases = [
        (lambda: generation_signatures("generator"), "generator", "generator='generator'"),
        (
            lambda: generation_signatures(table_generator, step_batch_size=0),
            "step_batch_size",
            "step_batch_size=0",
        ),
        (
            lambda: generation_signatures(table_generator, step_source_len=5),
            "step_source_len",
            "step_source_len=5",
        ),
        (
            lambda: generation_signatures(lm_generator, step_source_len=5),
            "step_source_len",
            "step_source_len=5",
        ),
        (lambda: export_generation_saved_model(table_generator, 3), "path", "path=3"),
        (
            lambda: export_generation_saved_model(
                table_generator, tmp_path / "sm", overwrite="yes"
            ),
            "overwrite",
            "overwrite='yes'",
        ),
        (
            lambda: export_generation_saved_model(table_generator, tmp_path / "no" / "sm"),
            "path",
            "path=",
        ),
        (
            lambda: export_generation_tflite(
                table_generator, tmp_path / "g.tflite", batch_size=None
            ),
            "batch_size",
            "batch_size=None",
        ),
        (
            lambda: export_generation_tflite(table_generator, tmp_path / "g.tflite", input_len=5),
            "input_len",
            "input_len=5",
        ),
        (lambda: export_generation_tflite(table_generator, tmp_path / "g.lite"), "path", "path="),
        # The file's batch and input length are fixed: refused before LiteRT runs
        # (which would fail with "RESHAPE ... (21 != 7)").
        (
            lambda: export_generation_tflite(
                lm_generator, tmp_path / "g.tflite", sample_inputs=PROMPTS
            ),
            "batch_size",
            "batch_size=1, sample_inputs.shape=(3, 4)",
        ),
        (
            lambda: export_generation_tflite(
                table_generator,
                tmp_path / "g.tflite",
                batch_size=2,
                input_len=3,
                sample_inputs=TABLE_SOURCE,
            ),
            "input_len",
            "input_len=3, sample_inputs.shape=(2, 4)",
        ),
        (
            lambda: export_generation_tflite(None, tmp_path / "g.tflite"),
            "generator",
            "generator=None",
        ),
        (
            lambda: export_decode_step_tflite(table_generator, tmp_path / "step", source_len=None),
            "source_len",
            "source_len=None",
        ),
        (
            lambda: export_decode_step_tflite(
                table_generator, tmp_path / "step", batch_size=1.0, source_len=4
            ),
            "batch_size",
            "batch_size=1.0",
        ),
        (
            lambda: export_decode_step_tflite(lm_generator, tmp_path / "step", source_len=4),
            "source_len",
            "source_len=4",
        ),
    ]
    for export, name, received in cases:
        with pytest.raises(ValueError, match=rf"`{name}`[\s\S]*Received: {re.escape(received)}"):
            export()
    assert not list(tmp_path.iterdir())


def test_reloaded_saved_model_rejects_bad_ids_lengths_and_indices(table_generator, tmp_path):
    token_ids, scores = table_generator.generate(TABLE_SOURCE, return_scores=True)
    assert not np.isin(token_ids, [0, START_ID]).any(), token_ids  # inherited exclusion
    report = export_generation_saved_model(table_generator, str(tmp_path / "generator"))
    loaded = tf.saved_model.load(report["path"])
    serve, encode, step = (
        loaded.signatures[name] for name in ("serving_default", "encode", "decode_step")
    )
    outputs = serve(source_ids=tf.constant(TABLE_SOURCE))
    np.testing.assert_array_equal(outputs["token_ids"], token_ids)
    np.testing.assert_allclose(outputs["scores"], scores, atol=1e-4)
    for signature in (serve, encode):
        for source, message in (
            ([[4, 12]], r"`source_ids` must hold token ids in \[0, 12\).*\[12\]"),
            ([[-1, 4]], r"`source_ids` must hold token ids in \[0, 12\).*\[-1\]"),
            ([[4, 5, 6, 7, 8]], r"`source_ids` must be at most 4 tokens long.*\[5\]"),
        ):
            with pytest.raises(tf.errors.InvalidArgumentError, match=message):
                signature(source_ids=tf.constant(source, tf.int32))
    encoded = encode(source_ids=tf.constant(TABLE_SOURCE[:1]))
    caches = {
        "self_attention_cache": encoded["self_attention_cache"],
        "cross_attention_cache": encoded["cross_attention_cache"],
        "source_mask": encoded["source_mask"],
    }
    logits = step(token_ids=tf.constant([[START_ID]]), index=tf.constant(0), **caches)["logits"]
    # The exported step excludes padding and start too, so an arg-max loop is safe.
    np.testing.assert_array_equal(np.asarray(logits)[0, [0, START_ID]], -1e9)
    assert np.asarray(logits)[0].argmax() == token_ids[0, 0]
    for token, index, message in (
        (12, 0, r"`token_ids` must hold token ids in \[0, 12\)"),
        (-1, 0, r"`token_ids` must hold token ids in \[0, 12\)"),
        (START_ID, 4, r"`index` must be in \[0, 4\)"),
        (START_ID, -1, r"`index` must be in \[0, 4\)"),
    ):
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            step(token_ids=tf.constant([[token]]), index=tf.constant(index), **caches)


def test_tflite_fails_closed_on_bad_ids_and_lengths(table_generator, tmp_path):
    # TFLite has no asserts: its GATHER refuses out-of-range indices,
    # negative ids included, so `invoke` raises RuntimeError.
    token_ids = table_generator.generate(TABLE_SOURCE[:1])
    runner = _runner(export_generation_tflite(table_generator, tmp_path / "g.tflite")["path"])
    np.testing.assert_array_equal(runner(source_ids=TABLE_SOURCE[:1])["token_ids"], token_ids)
    for source, message in (
        ([[4, 12]], "gather index out of bounds"),
        ([[-1, 4]], "gather index out of bounds"),
        ([[4, 5, 6, 7, 8]], "gather index out of bounds"),
    ):
        with pytest.raises(RuntimeError, match=message):
            runner(source_ids=np.array(source, "int32"))
    files = export_decode_step_tflite(table_generator, tmp_path / "step", source_len=4)["files"]
    encoded = _runner(files["encode"])(source_ids=TABLE_SOURCE[:1])
    step = _runner(files["decode_step"])
    caches = {
        name: encoded[name]
        for name in ("self_attention_cache", "cross_attention_cache", "source_mask")
    }
    logits = step(token_ids=np.array([[START_ID]], "int32"), index=np.array(0, "int32"), **caches)[
        "logits"
    ]
    np.testing.assert_array_equal(logits[0, [0, START_ID]], -1e9)
    for token, index in ((12, 0), (-1, 0), (START_ID, 4), (START_ID, -1)):
        with pytest.raises(RuntimeError, match="gather index out of bounds"):
            step(token_ids=np.array([[token]], "int32"), index=np.array(index, "int32"), **caches)


# ---------------------------------------------------------------------------
# Writing: path checks, overwrite and all-or-nothing replacement.


def _exports(table_generator, tmp_path):
    """`(name, export(overwrite), path)` for the three generation exporters."""
    return [
        (
            "saved_model",
            lambda overwrite: export_generation_saved_model(
                table_generator, tmp_path / "sm", overwrite=overwrite
            ),
            tmp_path / "sm",
        ),
        (
            "tflite",
            lambda overwrite: export_generation_tflite(
                table_generator, tmp_path / "g.tflite", overwrite=overwrite
            ),
            tmp_path / "g.tflite",
        ),
        (
            "decode_step",
            lambda overwrite: export_decode_step_tflite(
                table_generator, tmp_path / "step", source_len=4, overwrite=overwrite
            ),
            tmp_path / "step",
        ),
    ]


def _snapshot(path):
    if path.is_file():
        return {"": path.read_bytes()}
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def test_generation_exports_refuse_an_existing_path_and_overwrite(table_generator, tmp_path):
    for name, export, path in _exports(table_generator, tmp_path):
        if name == "tflite":
            path.write_bytes(b"old")
        else:
            path.mkdir()
            (path / "keep.txt").write_text("mine")
        before = _snapshot(path)
        with pytest.raises(ValueError, match=r"already exists.*overwrite=True.*Received: "):
            export(False)
        assert _snapshot(path) == before, name
        export(True)
        after = _snapshot(path)
        assert after != before and after, name
        assert "keep.txt" not in after, name
    assert _leftovers(tmp_path) == []
    # The replacements work.
    runner = _runner(tmp_path / "g.tflite")
    np.testing.assert_array_equal(
        runner(source_ids=TABLE_SOURCE[:1])["token_ids"],
        table_generator.generate(TABLE_SOURCE[:1]),
    )


def test_failed_generation_export_keeps_the_previous_artifact(
    table_generator, tmp_path, monkeypatch
):
    (tmp_path / "g.tflite").write_bytes(b"old")
    for folder in ("sm", "step"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "keep.txt").write_text("mine")
    before = {path: _snapshot(path) for _, _, path in _exports(table_generator, tmp_path)}

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    # Fails after the new artifact is written, before it replaces the old one.
    monkeypatch.setattr(generation_export.verify, "verify_export", broken)
    monkeypatch.setattr(generation_export.tflite, "tflite_op_names", broken)
    for name, export, path in _exports(table_generator, tmp_path):
        with pytest.raises(RuntimeError, match="boom"):
            if name == "saved_model":
                export_generation_saved_model(
                    table_generator, path, sample_inputs=TABLE_SOURCE, overwrite=True
                )
            else:
                export(True)
        assert _snapshot(path) == before[path], name
    assert _leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.tflite", "sm", "step"]


def test_generation_tflite_refuses_a_mixed_precision_model(tmp_path):
    keras.config.set_dtype_policy("mixed_float16")
    generator = Generator(lm()[1], max_length=4)
    for export in (
        lambda: export_generation_tflite(generator, tmp_path / "g.tflite"),
        lambda: export_decode_step_tflite(generator, tmp_path / "step"),
    ):
        with pytest.raises(ValueError, match=r"float32 dtype policy.*Received: .*float16"):
            export()
    assert os.listdir(tmp_path) == []


def test_transformer_lm_exports_and_verifies_against_keras(tmp_path):
    """`build_transformer_lm` has the interface itself: no wrapper needed."""
    keras.utils.set_random_seed(3)
    lm_model = ktl.build_transformer_lm(
        12, num_layers=1, model_dim=16, num_heads=2, intermediate_dim=32, dropout=0.0
    )
    generator = Generator(lm_model, max_length=6)
    report = export_generation_saved_model(generator, tmp_path / "lm", sample_inputs=PROMPTS)
    assert report["signatures"] == ["decode_step", "serving_default"]
    assert report["token_agreement"] == 1.0 and report["max_abs_diff"] <= 1e-4
    serve = tf.saved_model.load(report["path"]).signatures["serving_default"]
    np.testing.assert_array_equal(
        serve(prompt_ids=tf.constant(PROMPTS))["token_ids"], generator.generate(PROMPTS)
    )


@pytest.mark.parametrize("kind", ["seq2seq", "decoder_only"])
def test_sampling_exports_draw_the_keras_sample(kind, tmp_path):
    """The strategy's seed is baked in; Keras, SavedModel and TFLite draw the same tokens."""
    sampling = Sampling(temperature=1.5, top_k=6, top_p=0.9, seed=7)
    if kind == "seq2seq":
        interface = small_model(favoured=(END_ID,), bias=1.0)[1]
        generator = Generator(interface, sampling, max_new_tokens=MAX_NEW_TOKENS)
        inputs, name = TABLE_SOURCE, "source_ids"
    else:
        generator = Generator(lm()[1], sampling, max_length=LM_MAX_LENGTH)
        inputs, name = PROMPTS, "prompt_ids"
    tokens, scores = generator.generate(inputs, return_scores=True)
    assert not np.array_equal(tokens, generator.generate(inputs, seed=8))  # seeds matter
    saved = export_generation_saved_model(generator, tmp_path / "sm", sample_inputs=inputs)
    assert saved["token_agreement"] == 1.0
    served = tf.saved_model.load(saved["path"]).signatures["serving_default"]
    np.testing.assert_array_equal(served(**{name: tf.constant(inputs)})["token_ids"], tokens)
    report = export_generation_tflite(
        generator, tmp_path / "g.tflite", batch_size=len(inputs), sample_inputs=inputs
    )
    assert report["token_agreement"] == 1.0
    assert {"TOPK_V2", "CUMSUM", "FLOOR_MOD", "WHILE"} <= set(report["op_names"])
    assert not [op for op in report["op_names"] if op.startswith("CUSTOM")]
    outputs = _runner(report["path"])(**{name: inputs})
    np.testing.assert_array_equal(outputs["token_ids"], tokens)
    np.testing.assert_allclose(outputs["scores"], scores, atol=1e-4)


def test_seq2seq_beam_search_exports_give_the_keras_beams(trained_model, tmp_path):
    """Beam search with the GNMT penalty: SavedModel and the TFLite loop give the Keras beams."""
    beam_search = BeamSearch(num_beams=3, length_penalty=0.6)
    generator = Generator(interface_of(trained_model), beam_search, max_new_tokens=MAX_NEW_TOKENS)
    source = sources(4)
    tokens, scores = generator.generate(source, return_scores=True)
    assert (tokens[:, 0] != END_ID).all()  # real translations, not an immediate end
    saved = export_generation_saved_model(generator, tmp_path / "sm", sample_inputs=source)
    assert saved["token_agreement"] == 1.0
    served = tf.saved_model.load(saved["path"]).signatures["serving_default"]
    outputs = served(source_ids=tf.constant(source))
    np.testing.assert_array_equal(outputs["token_ids"], tokens)
    np.testing.assert_allclose(outputs["scores"], scores, atol=1e-4)
    report = export_generation_tflite(
        generator, tmp_path / "g.tflite", batch_size=len(source), sample_inputs=source
    )
    assert report["token_agreement"] == 1.0
    assert not [op for op in report["op_names"] if op.startswith("CUSTOM")]
    outputs = _runner(report["path"])(source_ids=source)
    np.testing.assert_array_equal(outputs["token_ids"], tokens)
    np.testing.assert_allclose(outputs["scores"], scores, atol=1e-4)
