"""The learning-rate schedule and optimizer of the paper (sec. 5.3)."""

import keras
from keras import ops

from keras_transformer_layers import _validation


@keras.saving.register_keras_serializable(package="keras_transformer_layers")
class TransformerSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The warm-up then inverse-square-root schedule of the paper.

    Section 5.3, equation (3):
    `lrate = model_dim ** -0.5 * min(step ** -0.5, step * warmup_steps ** -1.5)`.
    The rate rises linearly for `warmup_steps` steps, peaks at
    `(model_dim * warmup_steps) ** -0.5`, then decays as `step ** -0.5`.

    The paper counts steps from 1 while Keras passes the optimizer's
    zero-based iteration count; step 0 is given the rate of step 1, so the
    first update is not wasted with a zero rate.

    Args:
        model_dim: positive int, the model width `d_model`.
        warmup_steps: positive int, the length of the linear warm-up.
            Defaults to `4000` (the paper's value).

    Call arguments:
        step: int or scalar tensor, the optimizer iteration.

    Returns:
        The float32 learning rate.

    Example:

    >>> schedule = TransformerSchedule(model_dim=512, warmup_steps=4000)
    >>> round(float(schedule(4000)), 7)
    0.0006988
    """

    def __init__(self, model_dim, warmup_steps=4000):
        _validation.check_positive_int("model_dim", model_dim)
        _validation.check_positive_int("warmup_steps", warmup_steps)
        self.model_dim = model_dim
        self.warmup_steps = warmup_steps

    def __call__(self, step):
        step = ops.maximum(ops.cast(step, "float32"), 1.0)
        decay = ops.rsqrt(step)
        warmup = step * float(self.warmup_steps) ** -1.5
        return float(self.model_dim) ** -0.5 * ops.minimum(decay, warmup)

    def get_config(self):
        return {"model_dim": self.model_dim, "warmup_steps": self.warmup_steps}


@keras.saving.register_keras_serializable(package="keras_transformer_layers")
class TransformerAdam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` that refuses to train float16 variables.

    The paper's `epsilon=1e-9` is 0 in float16, and so is the square of any
    gradient below about 1.7e-4, so the first update divides by zero and the
    loss turns NaN. Under the `"mixed_float16"` policy the variables are
    float32 and nothing underflows; `transformer_adam` returns this class.

    Raises:
        ValueError: when built on float16 variables (the pure `"float16"`
            dtype policy, or layers created with `dtype="float16"`).
    """

    def build(self, var_list):
        float16 = [variable.path for variable in var_list if variable.dtype == "float16"]
        if float16:
            raise ValueError(
                "`transformer_adam` cannot train float16 variables: Adam's "
                f"epsilon={self.epsilon!r} and the squares of gradients below ~1.7e-4 "
                "underflow to 0 in float16, which makes the loss NaN after one "
                "step. Use the 'mixed_float16' dtype policy (float16 compute, "
                "float32 variables) instead of 'float16'. Received: "
                f"{len(float16)} float16 variables, e.g. {float16[:3]!r}"
            )
        super().build(var_list)


def transformer_adam(model_dim, warmup_steps=4000):
    """Returns the paper's optimizer: Adam with `TransformerSchedule`.

    Section 5.3: `beta_1=0.9`, `beta_2=0.98`, `epsilon=1e-9`, and the
    learning rate of `TransformerSchedule(model_dim, warmup_steps)`.

    Args:
        model_dim: positive int, the model width `d_model`.
        warmup_steps: positive int, warm-up steps. Defaults to `4000`.

    Returns:
        A `keras.optimizers.Adam` (a `TransformerAdam`, which raises a
        `ValueError` when asked to train float16 variables: use the
        `"mixed_float16"` policy, not `"float16"`).

    Example:

    ```python
    model.compile(optimizer=transformer_adam(model_dim=128, warmup_steps=400),
                  loss=MaskedSparseCategoricalCrossentropy(),
                  metrics=[MaskedAccuracy()])
    ```
    """
    return TransformerAdam(
        learning_rate=TransformerSchedule(model_dim, warmup_steps),
        beta_1=0.9,
        beta_2=0.98,
        epsilon=1e-9,
    )
