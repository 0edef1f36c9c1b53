"""Offline, deterministic synthetic translation tasks as a TFDS builder.

The data of `examples/demo.py`; importing this module registers the builder
`synthetic_translation`. Scripts in `examples/` import it as a sibling module.

Two tasks, each a TFDS builder config of `SyntheticTranslation`:

- `dates`: a calendar date written in one of many human-readable surface forms
  (`"Thursday, August 14, 1941"`, `"14.08.1941"`, `"the 14th of august, 1941"`,
  ...) translated to its ISO 8601 form (`"1941-08-14"`). Dates run from
  1900-01-01 to 2099-12-31. Every surface form is unambiguous: no two-digit
  years and no form where the day and month could swap.
- `numbers`: an integer in `[0, 1_000_000)`, written with or without thousands
  separators (`"421337"`, `"421,337"`), translated to English words
  (`"four hundred twenty-one thousand three hundred thirty-seven"`).

Splits never share an underlying value: a date (or number) drawn for `train`
appears in no other split, whatever its surface form. Generation uses a seeded
NumPy generator only, so two builds give the same examples.
"""

import dataclasses
import datetime
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from keras_transformer_layers import _validation

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_WEEKDAYS = (
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
)
_FIRST_DATE = datetime.date(1900, 1, 1)
_NUM_DATES = (datetime.date(2099, 12, 31) - _FIRST_DATE).days + 1
_NUM_NUMBERS = 1_000_000

_ONES = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
)
_TENS = (
    "",
    "",
    "twenty",
    "thirty",
    "forty",
    "fifty",
    "sixty",
    "seventy",
    "eighty",
    "ninety",
)


def _ordinal(day):
    if 11 <= day % 100 <= 13:
        return f"{day}th"
    return f"{day}" + {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def date_forms(date):
    """The 14 surface forms the `dates` task writes a date in.

    Each source of the task is one of them, drawn at random, so a model
    trained on the task reads these forms and no others.

    Args:
        date: a `datetime.date`.

    Returns:
        A tuple of 14 strings; their order is part of the dataset.

    Example:

    ```python
    import datetime
    from synthetic_translation import date_forms

    date_forms(datetime.date(1941, 8, 14))[:2]
    # ('Thursday, August 14, 1941', 'August 14, 1941')
    ```
    """
    d, m, y = date.day, date.month, date.year
    month = _MONTHS[m - 1]
    mon = month[:3]
    weekday = _WEEKDAYS[date.weekday()]
    wd = weekday[:3]
    return (
        f"{weekday}, {month} {d}, {y}",
        f"{month} {d}, {y}",
        f"{d} {month} {y}",
        f"{mon} {d}, {y}",
        f"{d} {mon} {y}",
        f"{wd} {d} {mon} {y}",
        f"{d:02d}.{m:02d}.{y}",
        f"{y}/{m:02d}/{d:02d}",
        f"{weekday} {d} {month} {y}",
        f"the {_ordinal(d)} of {month.lower()}, {y}",
        f"{month.lower()} {_ordinal(d)} {y}",
        f"{d} {month}, {y}",
        f"{wd}, {mon} {d} {y}",
        f"{month.upper()} {d} {y}",
    )


def date_to_iso(date):
    """Returns the ISO 8601 form of a `datetime.date`: `"1941-08-14"`."""
    if not isinstance(date, datetime.date):
        raise ValueError(f"`date` must be a `datetime.date`. Received: date={date!r}")
    return f"{date.year:04d}-{date.month:02d}-{date.day:02d}"


def number_to_words(number):
    """Writes a non-negative integer below one million in English words.

    Tens and units are joined by a hyphen (`"twenty-one"`); there is no "and"
    (`"one hundred five"`).

    Args:
        number: int in `[0, 1_000_000)`.

    Returns:
        The English words as a `str`.

    Example:

    >>> number_to_words(421337)
    'four hundred twenty-one thousand three hundred thirty-seven'
    """
    if (
        isinstance(number, bool)
        or not isinstance(number, (int, np.integer))
        or not 0 <= number < _NUM_NUMBERS
    ):
        raise ValueError(
            f"`number` must be an integer in [0, 1000000). Received: number={number!r}"
        )
    number = int(number)
    if number == 0:
        return "zero"

    def below_thousand(n):
        words = []
        if n >= 100:
            words += [_ONES[n // 100], "hundred"]
            n %= 100
        if n >= 20:
            words.append(_TENS[n // 10] + (f"-{_ONES[n % 10]}" if n % 10 else ""))
        elif n:
            words.append(_ONES[n])
        return words

    thousands, rest = divmod(number, 1000)
    words = []
    if thousands:
        words += below_thousand(thousands) + ["thousand"]
    words += below_thousand(rest)
    return " ".join(words)


def _number_formats(number):
    return (f"{number}", f"{number:,}")


@dataclasses.dataclass
class SyntheticTranslationConfig(tfds.core.BuilderConfig):
    """Builder config of a synthetic translation task.

    The predefined configs are `"dates"` and `"numbers"`. Pass your own
    instance to change the split sizes or the seed.

    Args:
        task: `"dates"` or `"numbers"`.
        num_train: positive int, number of training examples.
        num_validation: positive int, number of validation examples.
        num_test: positive int, number of test examples.
        seed: non-negative int, seed of the NumPy generator that draws the
            examples.

    Example:

    ```python
    config = SyntheticTranslationConfig(
        name="dates_small", task="dates", num_train=500, num_validation=50,
        num_test=50)
    builder = tfds.builder("synthetic_translation", config=config,
                           data_dir="/tmp/tfds")
    builder.download_and_prepare()
    ```
    """

    task: str = "dates"
    num_train: int = 20_000
    num_validation: int = 1_000
    num_test: int = 1_000
    seed: int = 1941

    def __post_init__(self):
        if not isinstance(self.task, str) or self.task not in ("dates", "numbers"):
            raise ValueError(f"`task` must be 'dates' or 'numbers'. Received: task={self.task!r}")
        for name in ("num_train", "num_validation", "num_test"):
            _validation.check_positive_int(name, getattr(self, name))
        _validation.check_non_negative_int("seed", self.seed)
        total = self.num_train + self.num_validation + self.num_test
        available = _NUM_DATES if self.task == "dates" else _NUM_NUMBERS
        if total > available:
            raise ValueError(
                f"The task {self.task!r} has only {available} distinct values, "
                "so the three splits cannot hold more without overlapping. "
                f"Received: num_train + num_validation + num_test={total}"
            )


class SyntheticTranslation(tfds.core.GeneratorBasedBuilder):
    """Synthetic translation tasks generated offline: `dates` and `numbers`.

    Each example is `{"source": str, "target": str}`; `as_supervised=True`
    gives `(source, target)` tuples. See the module docstring for the tasks.
    The builder needs no download, so `download_and_prepare()` works offline.

    Example:

    ```python
    import tensorflow_datasets as tfds
    import synthetic_translation  # registers the builder

    train = tfds.load("synthetic_translation/dates", split="train",
                      data_dir="/tmp/tfds")
    ```
    """

    # TFDS reads a builder's metadata files from its package; this module is
    # a script's sibling, not in a package, so name its folder.
    pkg_dir_path = pathlib.Path(__file__).resolve().parent
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        SyntheticTranslationConfig(
            name="dates",
            description="Human-readable dates to ISO 8601 dates.",
            task="dates",
        ),
        SyntheticTranslationConfig(
            name="numbers",
            description="Integers below one million to English words.",
            task="numbers",
        ),
    ]

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {"source": tfds.features.Text(), "target": tfds.features.Text()}
            ),
            supervised_keys=("source", "target"),
        )

    def _split_generators(self, dl_manager):
        config = self.builder_config
        available = _NUM_DATES if config.task == "dates" else _NUM_NUMBERS
        rng = np.random.default_rng(config.seed)
        sizes = {
            "train": config.num_train,
            "validation": config.num_validation,
            "test": config.num_test,
        }
        # One draw without replacement, then cut: the splits cannot overlap.
        values = rng.choice(available, size=sum(sizes.values()), replace=False)
        generators = {}
        start = 0
        for offset, (split, size) in enumerate(sizes.items()):
            generators[split] = self._generate_examples(
                values[start : start + size], seed=config.seed + offset + 1
            )
            start += size
        return generators

    def _generate_examples(self, values, seed):
        rng = np.random.default_rng(seed)
        for value in values:
            value = int(value)
            if self.builder_config.task == "dates":
                date = _FIRST_DATE + datetime.timedelta(days=value)
                forms = date_forms(date)
                target = date_to_iso(date)
            else:
                forms = _number_formats(value)
                target = number_to_words(value)
            source = forms[int(rng.integers(len(forms)))]
            yield value, {"source": source, "target": target}
