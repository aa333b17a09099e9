r"""Trains a config with AutoLRS (Jin et al., arXiv 2105.10762): the LR is
chosen stage by stage from short trials; rerunning the same command resumes.

  python -m experiments.autolrs --config=configs/bigram.py --workdir=/tmp/a \
      [--variant=autolrs|autolrs_grid] [--k=10] [--tau_prime=…] [--tau=…] \
      [--tau_max=…] [--lr_bounds=LO,HI] [--config.KEY=VALUE …]

``--variant=autolrs`` is the paper's (Bayesian optimisation proposes the
``k`` LRs of a stage one after another); ``autolrs_grid`` tries them as one
vmapped population on a log grid. ``config.optimizer`` is the optimizer
whose LR AutoLRS sets; ``config.schedule.peak_value`` only centres the
default bounds. Every trial, forecast and choice is recorded under
``WORKDIR/autolrs/``; ``metrics.jsonl`` rows carry ``compute_steps``
(exploration included). See ``wsd_jax.adaptive.autolrs`` for the defaults
(scaled to short runs) and the deviations from the paper.
"""

from absl import flags

from experiments import cli
from wsd_jax.adaptive import autolrs

_CONFIG = cli.define_config("configs/bigram.py")
_WORKDIR = cli.define_workdir("The main run's directory.")
_VARIANT = flags.DEFINE_enum("variant", "autolrs", list(autolrs.VARIANTS),
                             "autolrs: sequential BO (the paper's); "
                             "autolrs_grid: one vmapped population per stage.")
_K = flags.DEFINE_integer("k", None, "LRs tried per stage (default 10).")
_TAU_PRIME = flags.DEFINE_integer("tau_prime", None,
                                  "Steps of each trial in the first stage.")
_TAU = flags.DEFINE_integer("tau", None, "Exploit steps of the first stage.")
_TAU_MAX = flags.DEFINE_integer("tau_max", None, "Cap of the exploit steps.")
_BOUNDS = flags.DEFINE_list("lr_bounds", None,
                            "LO,HI: the LRs searched (default: peak_value "
                            "/ 100 .. peak_value * 10).")


def _bounds() -> tuple[float, float] | None:
  if _BOUNDS.value is None:
    return None
  try:
    values = tuple(float(v) for v in _BOUNDS.value)
  except ValueError:
    raise ValueError(f"--lr_bounds={','.join(_BOUNDS.value)}: give two "
                     "numbers LO,HI") from None
  if len(values) != 2:
    raise ValueError(f"--lr_bounds={','.join(_BOUNDS.value)}: give two "
                     "numbers LO,HI")
  return values


@cli.friendly_errors
def main(argv):
  del argv
  config = _CONFIG.value
  if flags.FLAGS.print_config:
    cli.print_config(config)
    return
  summary = autolrs.train(
      config, _WORKDIR.value, variant=_VARIANT.value, k=_K.value,
      tau_prime=_TAU_PRIME.value, tau=_TAU.value, tau_max=_TAU_MAX.value,
      lr_bounds=_bounds())
  if summary.get("stopped_by"):
    print(f"{summary['workdir']}: stopped by {summary['stopped_by']}; rerun "
          "the same command to resume")
    return
  lrs = ", ".join(f"{lr:.3g}" for lr in summary["lrs"])
  print(f"{summary['workdir']}: step {summary['step']}, compute_steps "
        f"{summary['compute_steps']}, eval_loss "
        f"{summary.get('eval_loss', float('nan')):.5f}; LR per stage: {lrs}")


if __name__ == "__main__":
  cli.run(main)
