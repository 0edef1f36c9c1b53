"""Backend-neutral generation: decoding strategies and the `Generator` that runs them.

`Generator` drives any model with the decoding interface
(`keras_transformer_layers.models.CachedDecodingMixin`): encoder-decoder
models from source ids, decoder-only models from prompts. The strategies
(`Greedy`, `BeamSearch`, `Sampling`) are small serializable objects written
in `keras.ops`; backend-specific compilation lives in `generation._compile`.
"""

from keras_transformer_layers.generation.generator import Generator
from keras_transformer_layers.generation.strategies import BeamSearch
from keras_transformer_layers.generation.strategies import Greedy
from keras_transformer_layers.generation.strategies import Sampling
from keras_transformer_layers.generation.strategies import Strategy
from keras_transformer_layers.generation.strategies import length_penalty

__all__ = [
    "BeamSearch",
    "Generator",
    "Greedy",
    "Sampling",
    "Strategy",
    "length_penalty",
]
