import datetime
import re

import pytest
import tensorflow_datasets as tfds

from tests import example_modules

synthetic = example_modules.load("synthetic_translation")
SyntheticTranslationConfig = synthetic.SyntheticTranslationConfig


def _config(task, name=None):
    return SyntheticTranslationConfig(
        name=name or f"{task}_tiny",
        task=task,
        num_train=200,
        num_validation=40,
        num_test=40,
        seed=7,
    )


def _build(task, data_dir):
    builder = tfds.builder("synthetic_translation", config=_config(task), data_dir=str(data_dir))
    builder.download_and_prepare()
    return {
        split: [
            (s.decode(), t.decode())
            for s, t in tfds.as_numpy(builder.as_dataset(split=split, as_supervised=True))
        ]
        for split in ("train", "validation", "test")
    }


@pytest.fixture(scope="module")
def dates(tmp_path_factory):
    return _build("dates", tmp_path_factory.mktemp("dates"))


@pytest.fixture(scope="module")
def numbers(tmp_path_factory):
    return _build("numbers", tmp_path_factory.mktemp("numbers"))


@pytest.mark.parametrize("task", ["dates", "numbers"])
def test_splits_sizes_and_no_overlap(task, dates, numbers):
    splits = dates if task == "dates" else numbers
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [200, 40, 40]
    # Disjoint by underlying value (the target), not just by surface string.
    targets = {split: {t for _, t in pairs} for split, pairs in splits.items()}
    assert len(targets["train"]) == 200
    assert not targets["train"] & targets["validation"]
    assert not targets["train"] & targets["test"]
    assert not targets["validation"] & targets["test"]


def test_dates_targets_are_the_source_dates(dates):
    formats_seen = set()
    for source, target in dates["train"] + dates["test"]:
        date = datetime.date.fromisoformat(target)
        forms = synthetic.date_forms(date)
        assert source in forms
        formats_seen.add(forms.index(source))
    # 240 draws over 14 forms: every form shows up.
    assert formats_seen == set(range(14))


def test_numbers_targets_are_the_source_numbers(numbers):
    for source, target in numbers["train"]:
        assert target == synthetic.number_to_words(int(source.replace(",", "")))
    assert any("," in s for s, _ in numbers["train"])


def test_deterministic_across_builds(dates, tmp_path):
    again = _build("dates", tmp_path)
    for split in ("train", "validation", "test"):
        assert sorted(again[split]) == sorted(dates[split])


@pytest.mark.parametrize(
    "number, words",
    [
        (0, "zero"),
        (7, "seven"),
        (13, "thirteen"),
        (40, "forty"),
        (99, "ninety-nine"),
        (105, "one hundred five"),
        (1000, "one thousand"),
        (20019, "twenty thousand nineteen"),
        (421337, "four hundred twenty-one thousand three hundred thirty-seven"),
        (999999, "nine hundred ninety-nine thousand nine hundred ninety-nine"),
    ],
)
def test_number_to_words(number, words):
    assert synthetic.number_to_words(number) == words


def test_date_formats_hand_examples():
    forms = synthetic.date_forms(datetime.date(1941, 8, 14))
    assert "Thursday, August 14, 1941" in forms
    assert "14.08.1941" in forms
    assert "the 14th of august, 1941" in forms
    assert synthetic._ordinal(1) == "1st" and synthetic._ordinal(22) == "22nd"
    assert synthetic._ordinal(13) == "13th" and synthetic._ordinal(3) == "3rd"
    assert synthetic.date_to_iso(datetime.date(1941, 8, 14)) == "1941-08-14"


def test_number_to_words_rejects_out_of_range():
    with pytest.raises(ValueError, match=r"`number`.*Received: number=1000000"):
        synthetic.number_to_words(1_000_000)


def test_unknown_config_name(tmp_path):
    with pytest.raises(ValueError, match="BuilderConfig roman not found"):
        tfds.builder("synthetic_translation/roman", data_dir=str(tmp_path))


def test_bad_config_values():
    with pytest.raises(ValueError, match=r"`task`.*Received: task='roman'"):
        SyntheticTranslationConfig(name="x", task="roman")
    with pytest.raises(ValueError, match=r"`num_test`.*Received: num_test=0"):
        SyntheticTranslationConfig(name="x", task="dates", num_test=0)
    with pytest.raises(ValueError, match=r"cannot hold more.*=80000"):
        SyntheticTranslationConfig(name="x", task="dates", num_train=78000)


@pytest.mark.parametrize(
    "field, value",
    [
        ("seed", -1),
        ("seed", 1.5),
        ("seed", None),
        ("seed", True),
        ("num_train", float("nan")),
        ("num_validation", -3),
        ("num_train", "100"),
        ("task", ["dates"]),
    ],
)
def test_config_rejects_bad_values_by_name(field, value):
    with pytest.raises(ValueError, match=rf"`{field}`.*Received: {field}={re.escape(repr(value))}"):
        SyntheticTranslationConfig(name="x", **{field: value})


def test_date_to_iso_needs_a_date():
    assert synthetic.date_to_iso(datetime.datetime(2001, 2, 3, 4, 5)) == "2001-02-03"
    with pytest.raises(ValueError, match=r"`date`.*Received: date='1941-08-14'"):
        synthetic.date_to_iso("1941-08-14")
