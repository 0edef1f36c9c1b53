"""The original Transformer (Vaswani et al., 2017) as serializable Keras 3 layers."""

from keras_transformer_layers.version import __version__

__all__ = ["__version__"]
