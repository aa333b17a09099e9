"""Train state, the jitted step, the loop and its config."""

from wsd_jax.train.config import base_config, validate
from wsd_jax.train import population
from wsd_jax.train.loop import (NonFiniteLossError, RunSpec, Start, evaluate,
                                setup, train_and_evaluate, train_population,
                                train_specs)
from wsd_jax.train.state import TrainState, tokens_seen
from wsd_jax.train.step import make_optimizer, train_step
