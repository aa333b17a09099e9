r"""Trains a run under the refined schedule of an earlier run (Defazio et
al., arXiv 2310.07831); rerunning the same command resumes.

  python -m experiments.refine --from=/tmp/r --workdir=/tmp/r_refined \
      [--norm=l1] [--smoothing=0.1] [--peak_value=…] [--total_steps=…]

The new run keeps the earlier run's config but for its schedule, a
``tabulated`` one computed from the earlier run's per-step gradient norms
(``per_step.jsonl``); ``--norm=l1`` for Adam-type optimizers. Its
``run.json`` names the run it was refined from (``refined_from``).
"""

from absl import flags

from experiments import cli
from wsd_jax.adaptive import refine_run

_FROM = flags.DEFINE_string("from", None, "The run to refine.", required=True)
_WORKDIR = cli.define_workdir("The new run's directory.")
_NORM = flags.DEFINE_enum("norm", "l2", ["l2", "l1"],
                          "l2 (SGD) or l1 (Adam-type) gradient norms.")
_SMOOTHING = flags.DEFINE_float("smoothing", 0.1, "Median-filter width as a "
                                "fraction of the run; 0: none.")
_PEAK = flags.DEFINE_float("peak_value", None, "Largest LR (default: the "
                           "earlier run's).")
_STEPS = flags.DEFINE_integer("total_steps", None, "Length of the new run "
                              "(default: the earlier run's).", lower_bound=2)


@cli.friendly_errors
def main(argv):
  del argv
  summary = refine_run.train_refined(
      _FROM.value, _WORKDIR.value, norm=_NORM.value,
      smoothing=_SMOOTHING.value, peak_value=_PEAK.value,
      total_steps=_STEPS.value)
  print(f"{summary['workdir']}: step {summary['step']}, "
        f"eval_loss {summary.get('eval_loss', float('nan')):.5f}")


if __name__ == "__main__":
  cli.run(main)
