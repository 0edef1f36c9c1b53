"""What `Seq2SeqTransformer` and `TransformerLM` share: hyperparameters and input checks."""

import keras
import numpy as np

from keras_transformer_layers import _validation


def check_stack_arguments(
    num_layers,
    model_dim,
    num_heads,
    intermediate_dim,
    dropout,
    activation,
    layer_norm_epsilon,
    normalize_first,
    max_wavelength,
):
    """Checks the stack and embedding hyperparameters of a model class.

    Raises:
        ValueError: for an argument that is not an int, float or bool in
            range (NaN and inf included), an unknown `activation`, or a
            `model_dim` not divisible by `num_heads`.
    """
    _validation.check_positive_int("num_layers", num_layers)
    _validation.check_positive_int("model_dim", model_dim)
    _validation.check_positive_int("num_heads", num_heads)
    _validation.check_positive_int("intermediate_dim", intermediate_dim)
    _validation.check_rate("dropout", dropout)
    _validation.get_activation("activation", activation)
    _validation.check_positive_float("layer_norm_epsilon", layer_norm_epsilon)
    _validation.check_bool("normalize_first", normalize_first)
    _validation.check_positive_float("max_wavelength", max_wavelength)
    if model_dim % num_heads != 0:
        raise ValueError(
            "`model_dim` must be divisible by `num_heads`. "
            f"Received: model_dim={model_dim}, num_heads={num_heads}"
        )


def layers_dtype_policy(dtype):
    """The dtype policy of every layer but the float32 logits.

    `None` is the global policy when the model is built, so that a model saved
    under a policy is rebuilt under the same one wherever it is loaded.
    """
    if dtype is None:
        return keras.config.dtype_policy()
    try:
        return keras.dtype_policies.get(dtype)
    except (ValueError, TypeError):
        raise ValueError(
            "`dtype` must be None, a dtype policy or its name (e.g. "
            f'"mixed_float16"). Received: dtype={dtype!r}'
        ) from None


def logits_dtype_policy(policy):
    """The policy of the untied `logits` Dense: float32, or its quantized policy.

    A quantized model's config records a `DTypePolicyMap` (see
    `keras_transformer_layers._quantization`); its entry for `logits` rebuilds that layer
    quantized, so that the saved int8 weights fit.
    """
    if isinstance(policy, keras.dtype_policies.DTypePolicyMap) and "logits" in policy:
        return policy["logits"]
    return "float32"


def check_token_id_inputs(model, inputs):
    """Checks that every input of `model` holds integer token ids.

    A functional model converts each input to the dtype of its `keras.Input`
    (int32) before any layer sees it, so float ids such as `4.7` would
    silently become `4`. The dtype is static: the check also runs when a
    graph is traced (`fit`, `predict`, XLA, `jax.jit`) and when the model is
    called on symbolic inputs.

    Args:
        model: a functional `keras.Model` whose inputs are token ids.
        inputs: what the model was called on: a tensor or array, a list in the
            order of `model.inputs`, or a dict keyed by input name.

    Raises:
        ValueError: naming the input, for one that is not of an integer dtype.
    """
    names = [tensor.name for tensor in model.inputs]
    if isinstance(inputs, dict):
        items = inputs.items()
    elif isinstance(inputs, (list, tuple)) and len(inputs) == len(names) > 1:
        items = zip(names, inputs, strict=True)
    else:
        items = [(names[0], inputs)]
    for name, value in items:
        dtype = getattr(value, "dtype", None)
        if dtype is None:  # a Python list
            dtype = np.asarray(value).dtype
        dtype = keras.backend.standardize_dtype(dtype)
        if not keras.backend.is_int_dtype(dtype):
            raise ValueError(
                f"`{name}` must be an integer array or tensor of token ids (a "
                f"float id would be truncated). Received: {name}.dtype={dtype}"
            )


class TokenIdInputsMixin:
    """Runs `check_token_id_inputs` on every call of a functional model class.

    `fit`, `evaluate`, `predict` and their `*_on_batch` forms check array
    inputs before Keras starts its loop: on JAX, an error raised inside the
    loop's first trace leaves the model's variables emptied (Keras frees them
    for the loop's duration), so the model would fail on every later call.
    Datasets and generators are checked when the loop calls the model.
    """

    def call(self, inputs, training=None, mask=None, **kwargs):
        check_token_id_inputs(self, inputs)
        return super().call(inputs, training=training, mask=mask, **kwargs)

    def compute_output_spec(self, inputs, training=None, mask=None):
        check_token_id_inputs(self, inputs)
        return super().compute_output_spec(inputs, training=training, mask=mask)

    def _check_arrays(self, x):
        if isinstance(x, (dict, list, tuple)) or hasattr(x, "dtype"):
            check_token_id_inputs(self, x)

    def fit(self, x=None, *args, **kwargs):
        self._check_arrays(x)
        return super().fit(x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        self._check_arrays(x)
        return super().evaluate(x, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        self._check_arrays(x)
        return super().predict(x, *args, **kwargs)

    def train_on_batch(self, x, *args, **kwargs):
        self._check_arrays(x)
        return super().train_on_batch(x, *args, **kwargs)

    def test_on_batch(self, x, *args, **kwargs):
        self._check_arrays(x)
        return super().test_on_batch(x, *args, **kwargs)

    def predict_on_batch(self, x):
        self._check_arrays(x)
        return super().predict_on_batch(x)
