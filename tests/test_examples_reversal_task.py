import re

import numpy as np
import pytest

from tests import example_modules

reversal = example_modules.load("reversal_task")


def test_reversal_hand_properties():
    inputs, target = reversal.reversal_arrays(
        4, vocabulary_size=9, min_length=2, max_length=5, seed=1
    )
    for source, decoder_inputs, labels in zip(
        inputs["encoder_inputs"], inputs["decoder_inputs"], target, strict=True
    ):
        tokens = source[source != 0]
        assert 2 <= len(tokens) <= 5 and tokens.min() >= 4 and tokens.max() <= 8
        np.testing.assert_array_equal(labels[: len(tokens)], tokens[::-1])
        assert labels[len(tokens)] == 3 and decoder_inputs[0] == 2
        np.testing.assert_array_equal(decoder_inputs[1 : len(tokens) + 1], labels[: len(tokens)])
        assert not decoder_inputs[len(tokens) + 1 :].any()


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"vocabulary_size": float("nan")}, "vocabulary_size"),
        ({"vocabulary_size": 16.0}, "vocabulary_size"),
        ({"vocabulary_size": 4}, "vocabulary_size"),
        ({"seed": -1}, "seed"),
        ({"seed": 0.5}, "seed"),
        ({"min_length": 0}, "min_length"),
    ],
)
def test_reversal_bad_arguments(kwargs, name):
    value = kwargs[name]
    with pytest.raises(ValueError, match=rf"`{name}`.*Received: {name}={re.escape(repr(value))}"):
        reversal.reversal_arrays(3, **kwargs)
    with pytest.raises(ValueError, match=r"`shuffle`.*Received: shuffle='no'"):
        reversal.reversal_dataset(3, shuffle="no")
