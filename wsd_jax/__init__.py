"""wsd_jax: learning-rate schedule science for language-model pretraining."""

__version__ = "0.1.0"
