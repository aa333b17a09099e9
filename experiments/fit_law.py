"""Fit a loss-curve law on some runs and predict others.

    python -m experiments.fit_law --fit=runs/main,runs/main/branches/d20 \
        --predict=runs/cosine --law=multipower [--out=DIR] [--metric=eval_loss] \
        [--min_step=300]

Prints the fitted law, any warning about the fit, the table (run, schedule,
mean/max relative error, R^2), its summary per role (worst error as the max
over runs and as the mean of each run's max) and the files written: the
tables as Markdown and JSON and a PNG of predicted vs observed curves with
their relative errors, in --out (default: ./fit_law_<law> in the current
directory; runs are only read, so it must not lie inside one).
"""

import warnings

from absl import app
from absl import flags

from experiments import cli
from wsd_jax.laws import fitting
from wsd_jax.laws import report

_FIT = flags.DEFINE_list("fit", None, "Run dirs to fit on.", required=True)
_PREDICT = flags.DEFINE_list("predict", [], "Run dirs to predict.")
_LAW = flags.DEFINE_enum("law", "annealing", sorted(report.LAWS), "The law.")
_OUT = flags.DEFINE_string(
    "out", None, "Output dir (default ./fit_law_<law>, not inside a run).")
_METRIC = flags.DEFINE_string("metric", "eval_loss", "metrics.jsonl key.")
_MIN_STEP = flags.DEFINE_integer(
    "min_step", 0, "Fit and score only losses from this step on.")


@cli.friendly_errors
def main(argv):
  del argv
  with warnings.catch_warnings():
    # Printed below, one line each, from fit_info.
    warnings.simplefilter("ignore", fitting.FitWarning)
    result = report.fit_and_report(_FIT.value, _PREDICT.value, _LAW.value,
                                   _OUT.value, _METRIC.value, _MIN_STEP.value)
  print(result.law)
  for note in result.law.fit_info["warnings"]:
    print(f"warning: {note}")
  print(report.markdown_table(result.rows))
  print(report.markdown_table(result.summary, report.SUMMARY_COLUMNS))
  print(report.SUMMARY_NOTE)
  for path in result.paths.values():
    print(f"wrote {path}")


if __name__ == "__main__":
  app.run(main)
