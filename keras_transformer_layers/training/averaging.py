"""Checkpoint averaging (paper section 6.1): the mean of the last k weight snapshots."""

import keras
import numpy as np

from keras_transformer_layers import _validation


@keras.saving.register_keras_serializable(package="keras_transformer_layers")
class CheckpointAveraging(keras.callbacks.Callback):
    """Writes the average of the last `num_checkpoints` weight snapshots into the model.

    Section 6.1 of Vaswani et al. (2017): the base models are evaluated with
    "a single model obtained by averaging the last 5 checkpoints". This
    callback takes a snapshot of the model's weights at the end of every
    epoch (`save_freq="epoch"`) or every `save_freq` training batches, keeps
    the last `num_checkpoints` of them in host memory (NumPy copies: k times
    the model's weights), and at the end of training sets every float
    variable of `model.weights` to the mean of its snapshots, like
    `EarlyStopping(restore_best_weights=True)` replaces the final weights:
    after `fit` returns, the model holds the average, and with `verbose=1` a
    line says how many snapshots were averaged.

    The mean is computed in float64 and cast to the variable's dtype
    (float32 results are the correctly rounded mean). Trainable and
    non-trainable float variables (e.g. moving statistics) are averaged;
    integer and bool variables (counters, seed states) are not averaged and
    keep their final values. The optimizer state is not touched.

    A snapshot is also taken at the end of training when the last batch
    was not one (so the final weights always count); if fewer than
    `num_checkpoints` snapshots were taken, those are averaged. `checkpoints`
    is the list of kept snapshots (oldest first, each a list of NumPy arrays
    in `model.weights` order), so the final, non-averaged weights stay
    available as `checkpoints[-1]`.

    Args:
        num_checkpoints: positive int, snapshots averaged (the paper's 5).
            Defaults to `5`.
        save_freq: `"epoch"` or a positive int, a snapshot every `save_freq`
            training batches. Defaults to `"epoch"`.
        verbose: `0` (silent) or `1` (one line when the average is written).
            Defaults to `0`.

    Raises:
        ValueError: for a `num_checkpoints` that is not a positive int, a
            `save_freq` that is neither `"epoch"` nor a positive int, or a
            `verbose` other than 0 and 1.

    Example:

    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> averaging = keras_transformer_layers.training.CheckpointAveraging(
    ...     num_checkpoints=2)
    >>> history = model.fit(np.ones((4, 2)), np.ones((4, 1)), epochs=3,
    ...                     verbose=0, callbacks=[averaging])
    >>> len(averaging.checkpoints)
    2

    Reference:
        Vaswani et al., "Attention Is All You Need", 2017, section 6.1.
    """

    def __init__(self, num_checkpoints=5, save_freq="epoch", verbose=0):
        super().__init__()
        _validation.check_positive_int("num_checkpoints", num_checkpoints)
        if save_freq != "epoch":
            if isinstance(save_freq, str):
                raise ValueError(
                    '`save_freq` must be "epoch" or a positive int (batches). '
                    f"Received: save_freq={save_freq!r}"
                )
            _validation.check_positive_int("save_freq", save_freq)
        if verbose not in (0, 1) or isinstance(verbose, bool):
            raise ValueError(f"`verbose` must be 0 or 1. Received: verbose={verbose!r}")
        self.num_checkpoints = num_checkpoints
        self.save_freq = save_freq
        self.verbose = verbose
        self.checkpoints = []
        self._batches_seen = 0
        self._last_snapshot_batch = None

    def on_train_begin(self, logs=None):
        self.checkpoints = []
        self._batches_seen = 0
        self._last_snapshot_batch = None

    def on_train_batch_end(self, batch, logs=None):
        self._batches_seen += 1
        if self.save_freq != "epoch" and self._batches_seen % self.save_freq == 0:
            self._snapshot()

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._snapshot()

    def on_train_end(self, logs=None):
        if self._last_snapshot_batch != self._batches_seen:
            self._snapshot()
        averaged = self.averaged_weights()
        for variable, value in zip(self.model.weights, averaged, strict=True):
            variable.assign(value)
        if self.verbose:
            print(
                f"CheckpointAveraging: set the model weights to the average of the last "
                f"{len(self.checkpoints)} checkpoints (save_freq={self.save_freq!r})."
            )

    def _snapshot(self):
        self.checkpoints.append(
            [keras.ops.convert_to_numpy(variable).copy() for variable in self.model.weights]
        )
        del self.checkpoints[: -self.num_checkpoints]
        self._last_snapshot_batch = self._batches_seen

    def averaged_weights(self):
        """The average of the kept snapshots, in `model.weights` order.

        Returns:
            A list of NumPy arrays: for float variables the float64 mean of
            the snapshots cast to the variable's dtype, for the others the
            latest snapshot.

        Raises:
            ValueError: if no snapshot was taken yet.
        """
        if not self.checkpoints:
            raise ValueError(
                "`averaged_weights` needs at least one snapshot: call it after training. "
                f"Received: {len(self.checkpoints)} checkpoints"
            )
        averaged = []
        for values in zip(*self.checkpoints, strict=True):
            latest = values[-1]
            if np.issubdtype(latest.dtype, np.floating):
                mean = np.mean(np.stack(values).astype(np.float64), axis=0)
                averaged.append(mean.astype(latest.dtype))
            else:
                averaged.append(latest)
        return averaged

    def get_config(self):
        return {
            "num_checkpoints": self.num_checkpoints,
            "save_freq": self.save_freq,
            "verbose": self.verbose,
        }
