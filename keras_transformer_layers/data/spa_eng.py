"""TFDS builder for the Tatoeba English-Spanish pairs read from a local file."""

import hashlib
import os
import zipfile

import tensorflow_datasets as tfds

SPA_ENG_URL = "http://storage.googleapis.com/download.tensorflow.org/data/spa-eng.zip"

_INSTRUCTIONS = f"""\
Download {SPA_ENG_URL} (about 2.6 MB) and either
  * pass its path: tfds.builder("spa_eng", corpus_path="/path/to/spa-eng.zip"),
    where the path may also point to the extracted `spa.txt`; or
  * put `spa-eng.zip` (or the extracted `spa.txt`) into a directory and pass
    download_config=tfds.download.DownloadConfig(manual_dir=that_directory)
    to `download_and_prepare`.
"""

# Shares of the 100 hash buckets of an English sentence: train, validation, test.
_SPLIT_BUCKETS = (("train", 90), ("validation", 5), ("test", 5))


def split_of(english):
    """Returns the split (`"train"`, `"validation"`, `"test"`) of a sentence.

    The split depends only on the English sentence (its SHA-256 hash), so all
    translations of one English sentence land in the same split, and adding
    pairs to the corpus never moves an existing pair to another split.

    Args:
        english: str, the English side of a pair.

    Returns:
        The split name.
    """
    if not isinstance(english, str):
        raise ValueError(f"`english` must be a `str` sentence. Received: english={english!r}")
    bucket = int(hashlib.sha256(english.encode("utf-8")).hexdigest()[:8], 16) % 100
    for split, share in _SPLIT_BUCKETS:
        if bucket < share:
            return split
        bucket -= share
    raise RuntimeError("unreachable: split shares must sum to 100")


def _find_corpus(path):
    """Returns the corpus file inside directory `path`, or None."""
    for name in ("spa-eng.zip", "spa.txt", os.path.join("spa-eng", "spa.txt")):
        candidate = os.path.join(path, name)
        if os.path.isfile(candidate):
            return candidate
    return None


def _read_lines(path):
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = [n for n in archive.namelist() if n.endswith("spa.txt")]
            if not members:
                raise ValueError(
                    "The zip archive holds no `spa.txt`; expected the archive "
                    f"from {SPA_ENG_URL}. Received: corpus_path={path!r}"
                )
            data = archive.read(members[0])
    else:
        with open(path, "rb") as f:
            data = f.read()
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ValueError(
            f"Line {line} of the corpus is not valid UTF-8 ({error.reason} at byte "
            f"{error.start}). Received: corpus_path={path!r}"
        ) from None


class SpaEng(tfds.core.GeneratorBasedBuilder):
    """English-Spanish sentence pairs from Tatoeba, via manythings.org/anki.

    This is the corpus of the Keras example "English-to-Spanish translation
    with a sequence-to-sequence Transformer": about 119k tab-separated pairs,
    English first. The file is public at
    http://storage.googleapis.com/download.tensorflow.org/data/spa-eng.zip
    (CC-BY 2.0 France, credit "Tatoeba Project (tatoeba.org), via
    www.manythings.org/anki"). The builder never downloads it: give it a local
    copy through `corpus_path` (the zip or the extracted `spa.txt`) or through
    TFDS' `manual_dir`.

    Splits are 90% train, 5% validation and 5% test of the distinct English
    sentences, chosen by a hash of the English sentence (`split_of`), so all
    translations of one sentence are in one split and the splits are the same
    on every build.

    `download_and_prepare` raises a `ValueError` naming the file when it is
    not found, not valid UTF-8, holds a line that is not
    `English<TAB>Spanish`, holds no pair at all (empty or whitespace only), or
    holds so few pairs that a split would be empty (TFDS cannot write one).

    Args:
        corpus_path: optional str, path of `spa-eng.zip` or `spa.txt`. When
            `None`, the file is looked for in the manual directory. Defaults
            to `None`.
        **kwargs: `tfds.core.DatasetBuilder` arguments such as `data_dir`.

    Example:

    ```python
    import tensorflow_datasets as tfds
    import keras_transformer_layers.data  # registers the builder

    builder = tfds.builder("spa_eng", data_dir="/tmp/tfds",
                           corpus_path="/path/to/spa-eng.zip")
    builder.download_and_prepare()
    train = builder.as_dataset(split="train", as_supervised=True)
    ```
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS

    def __init__(self, *, corpus_path=None, **kwargs):
        if corpus_path is not None and not isinstance(corpus_path, (str, os.PathLike)):
            raise ValueError(
                "`corpus_path` must be a path string or None. "
                f"Received: corpus_path={corpus_path!r}"
            )
        self.corpus_path = None if corpus_path is None else os.fspath(corpus_path)
        super().__init__(**kwargs)

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {"en": tfds.features.Text(), "es": tfds.features.Text()}
            ),
            supervised_keys=("en", "es"),
            homepage="https://www.manythings.org/anki/",
        )

    def _corpus_file(self, dl_manager):
        if self.corpus_path is not None:
            path = self.corpus_path
            if os.path.isdir(path):
                path = _find_corpus(path)
            if path is None or not os.path.isfile(path):
                raise ValueError(
                    "`corpus_path` is not a corpus file (or a directory holding "
                    f"one). {_INSTRUCTIONS}Received: corpus_path={self.corpus_path!r}"
                )
            return path
        try:
            manual_dir = os.fspath(dl_manager.manual_dir)
        except AssertionError:
            # TFDS signals a missing or empty manual directory with an
            # AssertionError; turn it into an error that says what to do.
            manual_dir = None
        path = None if manual_dir is None else _find_corpus(manual_dir)
        if path is None:
            raise ValueError(
                "The spa-eng corpus was not found: no `corpus_path` was given and "
                "the manual directory holds no `spa-eng.zip` or `spa.txt`. "
                f"{_INSTRUCTIONS}Received: corpus_path=None, manual_dir={manual_dir!r}"
            )
        return path

    def _split_generators(self, dl_manager):
        path = self._corpus_file(dl_manager)
        pairs = {split: [] for split, _ in _SPLIT_BUCKETS}
        for number, line in enumerate(_read_lines(path), start=1):
            if not line.strip():
                continue
            fields = line.split("\t")
            # Newer manythings files add a third, attribution column.
            if len(fields) < 2 or not fields[0].strip() or not fields[1].strip():
                raise ValueError(
                    f"Line {number} of the corpus is not 'English<TAB>Spanish'. "
                    f"Received: line={line!r}, corpus_path={path!r}"
                )
            english, spanish = fields[0].strip(), fields[1].strip()
            pairs[split_of(english)].append((number, english, spanish))
        # TFDS cannot write an empty split ("No examples were yielded").
        total = sum(len(examples) for examples in pairs.values())
        if not total:
            raise ValueError(
                "The corpus holds no 'English<TAB>Spanish' pairs: the file is empty "
                f"or holds only whitespace. {_INSTRUCTIONS}Received: corpus_path={path!r}"
            )
        empty = [split for split, examples in pairs.items() if not examples]
        if empty:
            raise ValueError(
                f"The corpus holds only {total} pairs, too few to fill the train, "
                "validation and test splits (90/5/5% of the English sentences, by "
                f"hash): the {' and '.join(empty)} split would be empty. Use the full "
                f"corpus from {SPA_ENG_URL}. Received: corpus_path={path!r}"
            )
        return {split: self._generate_examples(examples) for split, examples in pairs.items()}

    def _generate_examples(self, examples):
        for number, english, spanish in examples:
            yield number, {"en": english, "es": spanish}
