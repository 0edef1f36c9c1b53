import hashlib
import zipfile

import pytest
import tensorflow_datasets as tfds

from keras_transformer_layers.data import spa_eng

# Several English sentences with several translations each, as in Tatoeba.
_ENGLISH = [f"Sentence number {i}." for i in range(120)]


def _write_corpus(directory):
    lines = []
    for i, english in enumerate(_ENGLISH):
        for j in range(1 + i % 3):
            # Newer manythings exports add an attribution column.
            extra = "\tCC-BY 2.0 (France)" if j == 2 else ""
            lines.append(f"{english}\tFrase número {i}, versión {j}.{extra}")
    text = "\n".join(lines) + "\n"
    txt = directory / "spa.txt"
    txt.write_text(text, encoding="utf-8")
    archive = directory / "spa-eng.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("spa-eng/spa.txt", text)
        z.writestr("spa-eng/_about.txt", "about")
    return txt, archive, len(lines)


def _read(builder):
    return {
        split: [
            (en.decode(), es.decode())
            for en, es in tfds.as_numpy(builder.as_dataset(split=split, as_supervised=True))
        ]
        for split in ("train", "validation", "test")
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return _write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def from_zip(corpus, tmp_path_factory):
    _, archive, _ = corpus
    builder = tfds.builder(
        "spa_eng", corpus_path=str(archive), data_dir=str(tmp_path_factory.mktemp("tfds"))
    )
    builder.download_and_prepare()
    return _read(builder)


def test_splits_cover_corpus_and_keep_english_together(corpus, from_zip):
    _, _, num_lines = corpus
    assert sum(len(pairs) for pairs in from_zip.values()) == num_lines
    english = {split: {en for en, _ in pairs} for split, pairs in from_zip.items()}
    assert not english["train"] & english["validation"]
    assert not english["train"] & english["test"]
    assert not english["validation"] & english["test"]
    # Every split is the one `split_of` assigns, so all translations follow.
    for split, pairs in from_zip.items():
        for en, es in pairs:
            assert spa_eng.split_of(en) == split
            assert es.startswith("Frase número") and "CC-BY" not in es
    # 120 sentences hashed 90/5/5: train dominates, the others are not empty.
    assert len(english["train"]) > 90
    assert english["validation"] and english["test"]


def test_txt_and_manual_dir_give_same_splits(corpus, from_zip, tmp_path):
    txt, archive, _ = corpus
    from_txt = tfds.builder("spa_eng", corpus_path=str(txt), data_dir=str(tmp_path / "a"))
    from_txt.download_and_prepare()
    from_manual = tfds.builder("spa_eng", data_dir=str(tmp_path / "b"))
    from_manual.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(archive.parent))
    )
    for builder in (from_txt, from_manual):
        read = _read(builder)
        for split in from_zip:
            assert sorted(read[split]) == sorted(from_zip[split])


def test_missing_corpus_path_says_what_to_do(tmp_path):
    missing = str(tmp_path / "nope.zip")
    builder = tfds.builder("spa_eng", corpus_path=missing, data_dir=str(tmp_path))
    with pytest.raises(
        ValueError, match=r"(?s)Download http://storage.*Received: corpus_path='.*nope.zip'"
    ):
        builder.download_and_prepare()


def test_missing_manual_dir_says_what_to_do(tmp_path):
    builder = tfds.builder("spa_eng", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"(?s)not found.*spa-eng.zip.*Received: corpus_path=None"):
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path / "empty"))
        )


def test_malformed_line(tmp_path):
    bad = tmp_path / "spa.txt"
    bad.write_text("Go.\tVe.\nno tab here\n", encoding="utf-8")
    builder = tfds.builder("spa_eng", corpus_path=str(bad), data_dir=str(tmp_path / "d"))
    with pytest.raises(ValueError, match=r"Line 2 .*Received: line='no tab here'"):
        builder.download_and_prepare()


def test_bad_corpus_path_type(tmp_path):
    with pytest.raises(ValueError, match=r"`corpus_path`.*Received: corpus_path=3"):
        tfds.builder("spa_eng", corpus_path=3, data_dir=str(tmp_path))


def test_real_corpus_address_in_docstring():
    assert spa_eng.SPA_ENG_URL in spa_eng.SpaEng.__doc__


@pytest.mark.parametrize("text", ["", "\n", "  \n\t\n \n"], ids=["empty", "newline", "whitespace"])
def test_corpus_without_pairs(tmp_path, text):
    corpus = tmp_path / "spa.txt"
    corpus.write_text(text, encoding="utf-8")
    builder = tfds.builder("spa_eng", corpus_path=str(corpus), data_dir=str(tmp_path / "d"))
    with pytest.raises(
        ValueError,
        match=r"(?s)holds no 'English<TAB>Spanish' pairs: the file is empty or holds only "
        r"whitespace.*Received: corpus_path='.*spa.txt'",
    ):
        builder.download_and_prepare()


def test_corpus_too_small_for_every_split(tmp_path):
    english = [f"Sentence number {i}." for i in range(5)]
    # Which splits the 5 sentences fill, computed independently of the builder.
    buckets = [int(hashlib.sha256(e.encode()).hexdigest()[:8], 16) % 100 for e in english]
    assert all(b < 90 for b in buckets)  # all train: validation and test are empty
    corpus = tmp_path / "spa.txt"
    corpus.write_text(
        "".join(f"{e}\tFrase {i}.\n" for i, e in enumerate(english)), encoding="utf-8"
    )
    archive = tmp_path / "spa-eng.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("spa-eng/spa.txt", corpus.read_text(encoding="utf-8"))
    for path in (corpus, archive):
        builder = tfds.builder("spa_eng", corpus_path=str(path), data_dir=str(tmp_path / "d"))
        with pytest.raises(
            ValueError,
            match=r"only 5 pairs, too few.*the validation and test split would be empty.*"
            rf"Received: corpus_path='.*{path.name}'",
        ):
            builder.download_and_prepare()


def test_corpus_not_utf8(tmp_path):
    corpus = tmp_path / "spa.txt"
    corpus.write_bytes(b"Go.\tVe.\n" + b"Hi.\tHola \xff.\n")
    builder = tfds.builder("spa_eng", corpus_path=str(corpus), data_dir=str(tmp_path / "d"))
    with pytest.raises(
        ValueError,
        match=r"Line 2 of the corpus is not valid UTF-8.*Received: corpus_path='.*spa.txt'",
    ):
        builder.download_and_prepare()


def test_split_of_needs_a_string():
    assert spa_eng.split_of("Go.") in ("train", "validation", "test")
    with pytest.raises(ValueError, match=r"`english` must be a `str`.*Received: english=b'Go.'"):
        spa_eng.split_of(b"Go.")
