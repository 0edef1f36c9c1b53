"""Corpus BLEU (Papineni et al., 2002) on pre-tokenized text, for the examples.

Kept tiny and dependency-free on purpose; `tests/test_examples_bleu.py`
checks it against `keras_hub.metrics.Bleu` (a SacreBLEU replica).
"""

import collections
import math


def _ngrams(tokens, n):
    return collections.Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu(hypotheses, references, max_order=4):
    """Corpus-level BLEU with several references per sentence, no smoothing.

    Clipped n-gram precisions for n = 1..max_order are summed over the corpus,
    combined by a geometric mean, and multiplied by the brevity penalty
    `exp(1 - r / c)` when the total hypothesis length `c` is below the total
    reference length `r` (each sentence uses its closest reference length,
    the shorter one on ties).

    Args:
        hypotheses: list of token lists, one per sentence.
        references: list of lists of token lists (the references of each
            sentence).
        max_order: int, the largest n-gram order. Defaults to `4`.

    Returns:
        BLEU in `[0, 100]`.
    """
    if len(hypotheses) != len(references):
        raise ValueError(
            "`hypotheses` and `references` must have one entry per sentence. "
            f"Received: len(hypotheses)={len(hypotheses)}, len(references)={len(references)}"
        )
    matches = [0] * max_order
    totals = [0] * max_order
    hypothesis_length = reference_length = 0
    for hypothesis, refs in zip(hypotheses, references):
        hypothesis_length += len(hypothesis)
        reference_length += min(
            (len(r) for r in refs), key=lambda n: (abs(n - len(hypothesis)), n)
        )
        for n in range(1, max_order + 1):
            counts = _ngrams(hypothesis, n)
            longest = collections.Counter()
            for ref in refs:
                longest |= _ngrams(ref, n)
            matches[n - 1] += sum(min(c, longest[g]) for g, c in counts.items())
            totals[n - 1] += max(len(hypothesis) - n + 1, 0)
    if min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / max_order
    penalty = 1.0 if hypothesis_length >= reference_length else math.exp(
        1.0 - reference_length / max(hypothesis_length, 1)
    )
    return 100.0 * penalty * math.exp(log_precision)
