"""Shared tiny models, inputs and subprocess helpers of the export tests."""

import json
import os
import site
import subprocess
import sys

import keras
import numpy as np

import keras_transformer_layers as ktl
from keras_transformer_layers.export import CharacterTokenizer

CHARACTERS = "abcdefghij"


def tiny_transformer(vocabulary_size, model_dim=16, intermediate_dim=32, num_heads=2, seed=0):
    """A one-layer `build_transformer` model, deterministic for `seed`."""
    keras.utils.set_random_seed(seed)
    return ktl.build_transformer(
        vocabulary_size,
        vocabulary_size,
        num_layers=1,
        model_dim=model_dim,
        num_heads=num_heads,
        intermediate_dim=intermediate_dim,
        dropout=0.0,
    )


def character_model():
    """A tiny transformer over `CharacterTokenizer(CHARACTERS)` ids."""
    tokenizer = CharacterTokenizer(CHARACTERS)
    return tiny_transformer(tokenizer.vocabulary_size), tokenizer


def random_ids(vocabulary_size, batch, length, seed, pad_tail=0):
    """int32 ids in `[1, vocabulary_size)`; the last `pad_tail` are padding."""
    ids = np.random.default_rng(seed).integers(1, vocabulary_size, (batch, length))
    if pad_tail:
        ids[1:, length - pad_tail :] = 0  # padding in all rows but the first
    return ids.astype("int32")


def translation_inputs(vocabulary_size, batch, source_length, target_length, seed=0):
    return {
        "encoder_inputs": random_ids(vocabulary_size, batch, source_length, seed, 1),
        "decoder_inputs": random_ids(vocabulary_size, batch, target_length, seed + 1, 1),
    }


def run_python(args, script, cwd, env_extra=None, timeout=240):
    """Runs `python <args> -c script` from `cwd`; returns its stdout.

    The environment drops PYTHONPATH, so the child only sees the package if
    the caller puts it on the path.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({"TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"})
    env.update(env_extra or {})
    result = subprocess.run(
        [sys.executable, *args, "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def site_packages():
    """The interpreter's site-packages folders, for a child run with `-S`."""
    return json.dumps(site.getsitepackages())
