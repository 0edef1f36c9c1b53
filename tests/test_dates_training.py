"""A short end-to-end training on the dates task: data -> model -> recipe."""

import time

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import keras_transformer_layers as ktl
from keras_transformer_layers.data import TextTokenizer
from keras_transformer_layers.data import build_vocabulary
from keras_transformer_layers.data import make_translation_dataset
from keras_transformer_layers.generation import Generator
from keras_transformer_layers.training import MaskedAccuracy
from keras_transformer_layers.training import MaskedSparseCategoricalCrossentropy
from keras_transformer_layers.training import transformer_adam
from tests import example_modules

synthetic_translation = example_modules.load("synthetic_translation")


def _sources(source, target):
    return source


def _targets(source, target):
    return target


@pytest.mark.slow
def test_short_dates_training_reaches_exact_match(tmp_path):
    keras.utils.set_random_seed(0)
    config = synthetic_translation.SyntheticTranslationConfig(
        name="dates_test", task="dates", num_train=6000, num_validation=10, num_test=200
    )
    builder = tfds.builder("synthetic_translation", config=config, data_dir=str(tmp_path))
    builder.download_and_prepare()
    train = builder.as_dataset(split="train", as_supervised=True)
    source_tokenizer = TextTokenizer(build_vocabulary(train.map(_sources)))
    target_tokenizer = TextTokenizer(build_vocabulary(train.map(_targets)))
    batches = make_translation_dataset(
        train,
        source_tokenizer,
        target_tokenizer,
        batch_size=64,
        shuffle_buffer_size=6000,
        seed=0,
    )
    model = ktl.build_transformer(
        source_tokenizer.vocabulary_size,
        target_tokenizer.vocabulary_size,
        num_layers=1,
        model_dim=64,
        num_heads=4,
        intermediate_dim=128,
        dropout=0.0,
    )
    model.compile(
        optimizer=transformer_adam(model_dim=64, warmup_steps=200),
        loss=MaskedSparseCategoricalCrossentropy(),
        metrics=[MaskedAccuracy()],
    )
    start = time.monotonic()
    history = model.fit(batches, epochs=8, verbose=0)
    assert history.history["masked_accuracy"][-1] > 0.9

    pairs = list(builder.as_dataset(split="test", as_supervised=True).as_numpy_iterator())
    source_ids = source_tokenizer(tf.constant([s for s, _ in pairs])).numpy()
    output_ids = Generator(model, max_new_tokens=11).generate(source_ids)
    predictions = target_tokenizer.detokenize(output_ids).numpy()
    exact = np.mean([p == t for p, (_, t) in zip(predictions, pairs, strict=True)])
    elapsed = time.monotonic() - start
    print(f"dates: exact match {exact:.3f} on 200 test dates in {elapsed:.0f} s")
    # The whole date must be right, so one trajectory's result swings with rounding: seeds 0-2,
    # one or two compute threads, and two softmax formulations equal in exact arithmetic gave
    # 0.825 to 0.99. The bar asks that the task is learned (an untrained model scores 0), with
    # room below that spread.
    assert exact >= 0.75
