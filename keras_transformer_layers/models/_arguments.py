"""The hyperparameters `Seq2SeqTransformer` and `TransformerLM` share."""

import keras

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
