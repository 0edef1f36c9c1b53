"""The TensorFlow tutorial's `ted_hrlr_translate/pt_to_en`, without retry loops.

The TED data of `examples/translate.py --dataset ted`.
"""

import socket
import urllib.parse

import tensorflow_datasets as tfds

from keras_transformer_layers import _validation

TED_HRLR_NAME = "ted_hrlr_translate/pt_to_en"
# The archive `ted_hrlr_translate` downloads (see its TFDS builder).
TED_HRLR_URL = "http://www.phontron.com/data/qi18naacl-dataset.tar.gz"


def check_url_reachable(url, timeout=5.0):
    """Raises `ConnectionError` at once when `url`'s host cannot be reached.

    TFDS retries a failed download for minutes; this check opens one TCP
    connection with a short timeout first, so an offline machine gets a clear
    error in seconds.

    Args:
        url: str, an `http://` or `https://` address.
        timeout: finite positive float, seconds to wait for the connection.
            Defaults to `5.0`.

    Returns:
        None.

    Example:

    ```python
    check_url_reachable("http://www.phontron.com/data/qi18naacl-dataset.tar.gz")
    ```
    """
    _validation.check_positive_float("timeout", timeout)
    if not isinstance(url, str):
        raise ValueError(f"`url` must be an http(s) address. Received: url={url!r}")
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"`url` must be an http(s) address. Received: url={url!r}")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            pass
    except OSError as error:
        raise ConnectionError(
            f"Cannot reach {parsed.hostname}:{port} to download {url} ({error}). "
            "Connect this machine to the network, or prepare the dataset on a "
            "machine that has one and copy its TFDS `data_dir` here."
        ) from error


def load_ted_hrlr(split, data_dir, download=False, timeout=5.0):
    """Loads `ted_hrlr_translate/pt_to_en` as `(portuguese, english)` pairs.

    With `download=False` (the default) the dataset must already be prepared
    in `data_dir`; otherwise this raises a `ValueError` at once that says how
    to prepare it. With `download=True` the download host is probed first
    (`check_url_reachable`), so an offline machine fails within `timeout`
    seconds instead of entering TFDS' retry loop.

    Args:
        split: str, a TFDS split such as `"train"` or `"validation[:10%]"`.
        data_dir: str, the TFDS data directory.
        download: bool, whether to download and prepare the dataset when it is
            missing. Defaults to `False`.
        timeout: finite positive float, seconds for the reachability probe.
            Defaults to `5.0`.

    Returns:
        A `tf.data.Dataset` of `(source, target)` string scalars.

    Example:

    ```python
    pairs = load_ted_hrlr("train", data_dir="~/tensorflow_datasets",
                          download=True)
    ```
    """
    if not isinstance(data_dir, str) or not data_dir:
        raise ValueError(
            "`data_dir` must be a directory path; the TED loader never uses a "
            f"default location. Received: data_dir={data_dir!r}"
        )
    if not isinstance(split, str) or not split:
        raise ValueError(
            f"`split` must be a TFDS split string such as 'train'. Received: split={split!r}"
        )
    _validation.check_bool("download", download)
    _validation.check_positive_float("timeout", timeout)
    builder = tfds.builder(TED_HRLR_NAME, data_dir=data_dir)
    if not builder.is_prepared():
        if not download:
            raise ValueError(
                f"`{TED_HRLR_NAME}` is not prepared in {data_dir!r}. Pass "
                "download=True on a machine with network access (it downloads "
                f"{TED_HRLR_URL}, about 130 MB), or copy a prepared TFDS "
                f"data_dir here. Received: download={download!r}"
            )
        check_url_reachable(TED_HRLR_URL, timeout=timeout)
        builder.download_and_prepare()
    return builder.as_dataset(split=split, as_supervised=True)
