r"""The LR-scaling study: is the optimal peak LR a power law in tokens,
``eta_opt = a * T**b``, with one exponent for every batch size (Shen et al.,
arXiv 2408.13359)? Trains a grid of token budgets x batch sizes, each cell a
population over peak LR x seed; writes DIR/report.md, DIR/results.json and
DIR/lr_scaling_{loss,eta}.png with the computed verdict.

  python -m experiments.lr_scaling --workdir=/tmp/lr_scaling [--quick]

``--quick`` (2 x 2 cells, 4 LRs, 2 seeds) is the CI form. Rerunning resumes
the runs and redoes the analysis (``wsd_jax.studies.lr_scaling``).
"""

from absl import flags

from experiments import cli
from wsd_jax.studies import lr_scaling

_WORKDIR = cli.define_workdir("Study directory.")
_QUICK = flags.DEFINE_bool("quick", False, "A short version (CI).")


@cli.friendly_errors
def main(argv):
  del argv
  r = lr_scaling.run(_WORKDIR.value, quick=_QUICK.value)
  a = r["analysis"]
  for f in a["fits"]:
    print(f"[lr_scaling] batch {f['batch']}: b = {f['b']:+.3f} "
          f"[{f['b_ci'][0]:+.3f}, {f['b_ci'][1]:+.3f}]")
  print(f"[lr_scaling] b independent of batch size: {a['verdict']}")
  print(f"[lr_scaling] report: {_WORKDIR.value}/report.md "
        f"({r['wall_s']:.0f} s)")


if __name__ == "__main__":
  cli.run(main)
