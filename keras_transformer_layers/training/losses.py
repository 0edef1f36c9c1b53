"""Cross-entropy with label smoothing that ignores padding."""

import keras
from keras import ops

from keras_transformer_layers import _validation


@keras.saving.register_keras_serializable(package="keras_transformer_layers")
class MaskedSparseCategoricalCrossentropy(keras.losses.Loss):
    """Sparse categorical cross-entropy with label smoothing, padding ignored.

    Section 5.4 of the paper smooths the labels with `epsilon_ls = 0.1`. With
    `K` classes the target distribution is
    `q = (1 - label_smoothing) * one_hot(y) + label_smoothing / K`
    (the convention of `keras.losses.CategoricalCrossentropy`), and the loss
    of a token is `-sum_k q_k log p_k`.

    Positions where `y_true == padding_id` count for nothing: the result is
    the sum over real tokens divided by the number of real tokens in the
    batch (0 when there are none). The normalisation happens inside the loss
    (reduction `"sum"` over pre-divided values), so the value is the same
    whether or not `y_pred` carries a Keras mask.

    Every other label must be a class id in `[0, num_classes)`, where
    `num_classes` is the last dimension of `y_pred`. An out-of-range label
    (say 15 with 12 classes, or -1 with padding id 0) is an error, never a
    silently ignored token:

    - eagerly, the call raises a `ValueError` naming the label and
      `num_classes`;
    - in a graph (`tf.function`, `model.fit` with `jit_compile=False`, the
      default on CPU) an assertion raises `tf.errors.InvalidArgumentError`
      with the same text and the bad labels when the step runs, as Keras' own
      `sparse_categorical_crossentropy` does on CPU;
    - under XLA (`jit_compile=True`, Keras' default on GPU), which compiles
      assertions out, the loss and its gradient are NaN, so the reported loss
      is `nan` and training visibly fails (Keras' own loss is NaN there too).
      `make_translation_dataset` checks the ids it hands the model, which
      catches a too-small vocabulary before any step runs.

    Args:
        label_smoothing: float in `[0, 1)`. Defaults to `0.1`.
        from_logits: bool, whether `y_pred` holds logits (else
            probabilities). Defaults to `True`.
        padding_id: non-negative int, the label id that marks padding.
            Defaults to `0`.
        name: str, the loss name. Defaults to
            `"masked_sparse_categorical_crossentropy"`.
        dtype: optional dtype of the computation. Defaults to `None` (floatx).

    Call arguments:
        y_true: int labels `(batch, seq)`.
        y_pred: logits or probabilities `(batch, seq, num_classes)`.
        sample_weight: optional weights broadcastable to `(batch, seq)`.

    Returns:
        A scalar loss.

    Raises:
        ValueError: at construction, for a bad argument; eagerly, at call
            time, for a label outside `[0, num_classes)` that is not the
            padding id.

    Example:

    >>> loss = MaskedSparseCategoricalCrossentropy(label_smoothing=0.0)
    >>> y_true = np.array([[1, 0]])
    >>> y_pred = np.log(np.array([[[0.5, 0.5], [0.9, 0.1]]]))
    >>> round(float(loss(y_true, y_pred)), 4)
    0.6931
    """

    def __init__(
        self,
        label_smoothing=0.1,
        from_logits=True,
        padding_id=0,
        name="masked_sparse_categorical_crossentropy",
        dtype=None,
    ):
        _validation.check_rate("label_smoothing", label_smoothing)
        if not isinstance(from_logits, bool):
            raise ValueError(f"`from_logits` must be a bool. Received: from_logits={from_logits!r}")
        if isinstance(padding_id, bool) or not isinstance(padding_id, int) or padding_id < 0:
            raise ValueError(
                f"`padding_id` must be a non-negative integer. Received: padding_id={padding_id!r}"
            )
        super().__init__(name=name, reduction="sum", dtype=dtype)
        self.label_smoothing = label_smoothing
        self.from_logits = from_logits
        self.padding_id = padding_id

    def call(self, y_true, y_pred):
        num_classes = ops.shape(y_pred)[-1]
        # Checked before the int32 cast, which could wrap 2**32 + 5 to 5.
        out_of_range = _validation.check_ids_in_range(
            "y_true", y_true, 0, num_classes, "num_classes", ignore=self.padding_id
        )
        y_true = ops.cast(y_true, "int32")
        if self.from_logits:
            log_probs = ops.log_softmax(y_pred, axis=-1)
        else:
            log_probs = ops.log(ops.clip(y_pred, 1e-7, 1.0))
        target = ops.one_hot(y_true, num_classes, dtype=log_probs.dtype)  # (batch, seq, K)
        smoothing = ops.cast(self.label_smoothing, log_probs.dtype)
        target = target * (1.0 - smoothing) + smoothing / ops.cast(num_classes, log_probs.dtype)
        token_loss = -ops.sum(target * log_probs, axis=-1)  # (batch, seq)
        # Under XLA the range check above is compiled out: an out-of-range
        # label makes its token's loss and gradient NaN instead.
        nan_if_out_of_range = ops.where(out_of_range, float("nan"), 1.0)
        token_loss = token_loss * ops.cast(nan_if_out_of_range, token_loss.dtype)
        mask = ops.cast(ops.not_equal(y_true, self.padding_id), token_loss.dtype)
        # Pre-divide by the number of real tokens; the "sum" reduction adds up.
        return ops.divide_no_nan(token_loss * mask, ops.sum(mask))

    def get_config(self):
        return {
            "name": self.name,
            "dtype": self.dtype,
            "label_smoothing": self.label_smoothing,
            "from_logits": self.from_logits,
            "padding_id": self.padding_id,
        }
