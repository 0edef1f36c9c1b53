"""The dtype policy a config records, so that a quantized layer or model reloads.

`model.quantize("int8")` changes the dtype policy of the innermost `Dense`,
`EinsumDense` and `Embedding` layers only (to e.g. `"int8_from_float32"`);
the layers of this package create those sublayers in `build()` from their
own policy, so a config holding the plain policy rebuilds them in float and
the saved int8 weights no longer fit. The configs record instead a
`keras.dtype_policies.DTypePolicyMap`: the layer's policy by default, and the
quantized policy of each quantized sublayer under its path. Passed down as
`dtype=self.dtype_policy`, the map gives every rebuilt sublayer the policy it
was saved with (Keras looks a map up by `layer.path`, which a rebuilt layer
shares with the saved one).
"""

import keras


def resolved_policy(layer):
    """The `DTypePolicy` of `layer` itself (looked up in a map by its path)."""
    policy = layer.dtype_policy
    if isinstance(policy, keras.dtype_policies.DTypePolicyMap):
        return policy[layer.path]
    return policy


def default_policy(policy):
    """The policy of the unquantized layers: a map's default, else `policy`."""
    if isinstance(policy, keras.dtype_policies.DTypePolicyMap):
        return policy.default_policy
    return policy


def dtype_config(layer, policy=None):
    """The serialized dtype of `layer`'s config, quantized sublayers included.

    Args:
        layer: a built or unbuilt Keras layer (or model).
        policy: the policy of the unquantized layers; defaults to the
            layer's own.

    Returns:
        The serialized `policy` when no sublayer of `layer` is quantized,
        else a serialized `DTypePolicyMap` with `policy` as default and the
        policy of each quantized sublayer under its path.
    """
    policy = default_policy(layer.dtype_policy if policy is None else policy)
    # `_flatten_layers` is how Keras itself lists nested layers (in
    # `Model.quantize` and the `DTypePolicyMap` docstring); there is no public
    # equivalent.
    quantized = {
        sublayer.path: resolved_policy(sublayer)
        for sublayer in layer._flatten_layers(include_self=False)
        if sublayer.path is not None and sublayer.quantization_mode is not None
    }
    if not quantized:
        return keras.dtype_policies.serialize(policy)
    return keras.dtype_policies.serialize(
        keras.dtype_policies.DTypePolicyMap(default_policy=policy, policy_map=quantized)
    )
