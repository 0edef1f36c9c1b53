"""Token accuracy that ignores padding."""

import keras
from keras import ops

from keras_transformer_layers import _validation


@keras.saving.register_keras_serializable(package="keras_transformer_layers")
class MaskedAccuracy(keras.metrics.Metric):
    """Share of real (non-padding) tokens whose arg-max prediction is right.

    Padding positions (`y_true == padding_id`) are never counted, whatever
    the prediction there. The state is two running sums (correct tokens and
    real tokens), so the result over an epoch is token-weighted, not an
    average of per-batch accuracies.

    Every other label must be a class id in `[0, num_classes)` (the last
    dimension of `y_pred`); as in `MaskedSparseCategoricalCrossentropy`, an
    out-of-range label raises a `ValueError` eagerly, an
    `InvalidArgumentError` in a graph, and makes the result NaN under XLA.

    Args:
        padding_id: non-negative int, the label id that marks padding.
            Defaults to `0`.
        name: str, the metric name. Defaults to `"masked_accuracy"`.
        dtype: optional dtype of the result. Defaults to `None` (floatx).

    Call arguments (`update_state`):
        y_true: int labels `(batch, seq)`.
        y_pred: scores `(batch, seq, num_classes)`.
        sample_weight: optional weights broadcastable to `(batch, seq)`.

    Returns:
        `result()` is a float scalar in `[0, 1]`.

    Raises:
        ValueError: at construction, for a bad `padding_id`; eagerly, in
            `update_state`, for a label outside `[0, num_classes)` that is not
            the padding id.

    Example:

    >>> metric = MaskedAccuracy()
    >>> metric.update_state([[1, 2, 0]], np.eye(3)[[[1, 0, 2]]])
    >>> float(metric.result())
    0.5
    """

    def __init__(self, padding_id=0, name="masked_accuracy", dtype=None):
        if isinstance(padding_id, bool) or not isinstance(padding_id, int) or padding_id < 0:
            raise ValueError(
                f"`padding_id` must be a non-negative integer. Received: padding_id={padding_id!r}"
            )
        super().__init__(name=name, dtype=dtype)
        self.padding_id = padding_id
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        # Checked before the int32 cast, which could wrap 2**32 + 5 to 5.
        out_of_range = _validation.check_ids_in_range(
            "y_true", y_true, 0, ops.shape(y_pred)[-1], "num_classes", ignore=self.padding_id
        )
        y_true = ops.cast(y_true, "int32")
        predictions = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        weight = ops.cast(ops.not_equal(y_true, self.padding_id), self.dtype)  # (batch, seq)
        # Under XLA the range check is compiled out: an out-of-range label
        # makes the counts, so the result, NaN instead.
        nan_if_out_of_range = ops.where(out_of_range, float("nan"), 1.0)
        weight = weight * ops.cast(nan_if_out_of_range, weight.dtype)
        if sample_weight is not None:
            sample_weight = ops.cast(sample_weight, self.dtype)
            if len(ops.shape(sample_weight)) == 1:
                sample_weight = ops.expand_dims(sample_weight, -1)  # (batch, 1)
            weight = weight * sample_weight
        hits = ops.cast(ops.equal(y_true, predictions), self.dtype) * weight
        self.correct.assign_add(ops.sum(hits))
        self.count.assign_add(ops.sum(weight))

    def result(self):
        return ops.divide_no_nan(self.correct, self.count)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "padding_id": self.padding_id}
