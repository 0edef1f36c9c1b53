"""The TFLite converter settings every exporter uses: builtin ops, one set of quantizations."""

import tensorflow as tf


def converter_settings(quantization):
    """Converter attributes for `quantization`, in the form `model.export(format="litert")` takes."""
    settings = {"target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}}
    if quantization is not None:
        # DEFAULT without a representative dataset is dynamic-range
        # quantization (int8 weights, float activations), or float16 weights
        # when float16 is the supported type.
        settings["optimizations"] = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        settings["target_spec"]["supported_types"] = [tf.float16]
    return settings


def convert(function, trackable, quantization):
    """The `.tflite` bytes of the `tf.function` `function` (variables tracked by `trackable`)."""
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], trackable
    )
    for attribute, value in converter_settings(quantization).items():
        if attribute == "target_spec":
            for key, spec_value in value.items():
                setattr(converter.target_spec, key, spec_value)
        else:
            setattr(converter, attribute, value)
    return converter.convert()
