import time

import pytest
import tensorflow_datasets as tfds

from keras_transformer_layers.data import TextTokenizer
from keras_transformer_layers.data import make_translation_dataset
from tests import example_modules

ted = example_modules.load("ted_hrlr")


def test_not_prepared_fails_fast_with_instructions(tmp_path):
    start = time.monotonic()
    with pytest.raises(
        ValueError, match=r"(?s)not prepared.*download=True.*Received: download=False"
    ):
        ted.load_ted_hrlr("train", data_dir=str(tmp_path))
    assert time.monotonic() - start < 10.0


def test_unreachable_host_fails_fast():
    # `.invalid` never resolves (RFC 2606), with or without network.
    start = time.monotonic()
    with pytest.raises(ConnectionError, match="Cannot reach tfds-probe.invalid:80"):
        ted.check_url_reachable("http://tfds-probe.invalid/data.tar.gz", timeout=2.0)
    assert time.monotonic() - start < 10.0


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"`url`.*Received: url='ftp://x/y'"):
        ted.check_url_reachable("ftp://x/y")
    with pytest.raises(ValueError, match=r"`data_dir`.*Received: data_dir=None"):
        ted.load_ted_hrlr("train", data_dir=None)


def test_mocked_ted_goes_through_pipeline(tmp_path, monkeypatch):
    # mock_data fakes the examples; the dataset counts as already prepared.
    monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
    with tfds.testing.mock_data(num_examples=12):
        pairs = ted.load_ted_hrlr("train", data_dir=str(tmp_path))
        examples = list(pairs.as_numpy_iterator())
    assert len(examples) == 12
    assert all(isinstance(s, bytes) and isinstance(t, bytes) for s, t in examples)
    texts = [s.decode() for s, _ in examples] + [t.decode() for _, t in examples]
    vocabulary = sorted(set("".join(texts)))
    tokenizer = TextTokenizer(vocabulary=vocabulary)
    batches = list(make_translation_dataset(pairs, tokenizer, tokenizer, batch_size=5))
    assert [b[1].shape[0] for b in batches] == [5, 5, 2]
    inputs, labels = batches[0]
    assert inputs["decoder_inputs"].shape == labels.shape
    # Round trip: the first pair's source reads back exactly.
    assert tokenizer.detokenize(inputs["encoder_inputs"][0]).numpy() == examples[0][0]


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), 0, -1.0, "5"])
def test_timeout_must_be_finite_and_positive(tmp_path, timeout):
    with pytest.raises(ValueError, match=rf"`timeout`.*Received: timeout={timeout!r}"):
        ted.check_url_reachable("http://tfds-probe.invalid/x", timeout=timeout)
    with pytest.raises(ValueError, match=rf"`timeout`.*Received: timeout={timeout!r}"):
        ted.load_ted_hrlr("train", data_dir=str(tmp_path), download=True, timeout=timeout)


def test_more_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"`url`.*Received: url=None"):
        ted.check_url_reachable(None)
    with pytest.raises(ValueError, match=r"`download`.*Received: download='yes'"):
        ted.load_ted_hrlr("train", data_dir=str(tmp_path), download="yes")
    with pytest.raises(ValueError, match=r"`split`.*Received: split=None"):
        ted.load_ted_hrlr(None, data_dir=str(tmp_path))
