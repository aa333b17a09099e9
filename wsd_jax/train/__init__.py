"""The trainer: executes run specs. Config, setup, the jitted step, the loop
(one run or a population), evaluation, sharding and distributed start-up."""

from wsd_jax.train import population
from wsd_jax.train.config import base_config, validate
from wsd_jax.train.evaluation import evaluate
from wsd_jax.train.loop import (NonFiniteLossError, Population, Single, branch,
                                continue_from_branch, train_and_evaluate,
                                train_population, train_specs)
from wsd_jax.train.setup import Setup, load_state, setup
from wsd_jax.train.state import TrainState, tokens_seen
from wsd_jax.train.step import make_optimizer, train_step
from wsd_jax.runs.spec import RunSpec, Start
