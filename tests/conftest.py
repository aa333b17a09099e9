"""Shared test settings: strict rank promotion, as in nanodo's tests."""

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")
