"""The one place where generation depends on the backend: how the loop is compiled.

- TensorFlow: `tf.function` over `(inputs, seed)`, variables captured by
  reference, so later weight updates are seen. Without XLA one graph of
  any `(batch, length)` serves every shape; with `jit_compile=True` XLA
  compiles one program per input shape, so the function is traced once per
  shape too (the tracing count is the compilation count).
- JAX: `jax.jit`, the model variables passed in as arguments and mapped in a
  `keras.StatelessScope`, so later weight updates are seen without
  retracing.
- Other backends (PyTorch): eager.
"""

import keras


def compile_generation(function, variables, jit_compile):
    """Compiles `function(inputs, seed) -> (token_ids, scores)` for the backend.

    Args:
        function: traceable function of an int32 `(batch, length)` tensor and
            an int32 scalar seed.
        variables: list of the `keras.Variable`s `function` reads.
        jit_compile: bool, compile with XLA on TensorFlow (JAX always does).

    Returns:
        A function of the same arguments and results.
    """
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if not jit_compile:
            return tf.function(
                function,
                input_signature=[
                    tf.TensorSpec((None, None), tf.int32, name="inputs"),
                    tf.TensorSpec((), tf.int32, name="seed"),
                ],
            )
        compiled = tf.function(function, jit_compile=True)

        def run_xla(inputs, seed):
            # Tensors, not NumPy values: a new seed must not trace again.
            return compiled(tf.convert_to_tensor(inputs, tf.int32), tf.convert_to_tensor(seed))

        return run_xla
    if backend == "jax":
        import jax

        def stateless(values, inputs, seed):
            with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
                return function(inputs, seed)

        compiled = jax.jit(stateless)

        def run(inputs, seed):
            return compiled([variable.value for variable in variables], inputs, seed)

        return run
    return function
