"""Run directories: layout, the ``Run`` reader, lineage, Orbax checkpoints,
locks, run specs (what to train, from where) and which process writes them
(``processes``). Never imports ``train``."""

from wsd_jax.runs.checkpoint import CheckpointMismatchError, Checkpointer
from wsd_jax.runs.lineage import ConfigChangedError
from wsd_jax.runs.lock import RunLock, RunLockedError
from wsd_jax.runs.rundir import RunDirError, branches, read_config, read_metrics, read_run
from wsd_jax.runs.run import Run
from wsd_jax.runs.spec import RunSpec, Start, branch_name, branch_spec, checkpoint_steps, wsd_s_spec
