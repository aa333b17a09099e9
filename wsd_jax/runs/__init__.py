"""Run directories, Orbax checkpoints, branches and WSD-S."""

from wsd_jax.runs.checkpoint import Checkpointer
from wsd_jax.runs.restore import load_state
from wsd_jax.runs.rundir import branches, read_config, read_metrics, read_run
