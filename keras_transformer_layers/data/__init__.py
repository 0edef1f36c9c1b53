"""Datasets and tf.data pipelines for training translation models."""
