"""Builds a model's optimizer before its first training step is traced."""

import keras


class OptimizerBuildMixin:
    """Builds the optimizer's variables before `fit` or `train_on_batch` trace the step.

    On TensorFlow without a distribution strategy, Keras creates the
    optimizer's slot variables (Adam's moments) inside the first trace of the
    train step, and a `tf.function` that creates variables is traced a second
    time: the first `fit` would build the whole step twice. Building them first,
    in the model's distribution strategy, is what Keras does itself under a
    `tf.distribute` strategy and on the other backends; the variables and the
    training are the same.
    """

    def _build_optimizer(self):
        optimizer = getattr(self, "optimizer", None)
        if keras.config.backend() != "tensorflow" or optimizer is None or optimizer.built:
            return
        with self.distribute_strategy.scope():
            optimizer.build(self.trainable_variables)

    def fit(self, *args, **kwargs):
        self._build_optimizer()
        return super().fit(*args, **kwargs)

    def train_on_batch(self, *args, **kwargs):
        self._build_optimizer()
        return super().train_on_batch(*args, **kwargs)
