"""Fit a loss-curve law on some runs and predict others.

    python -m experiments.fit_law --fit=runs/main,runs/main/branches/d20 \
        --predict=runs/cosine --law=multipower [--out=DIR] [--metric=eval_loss] \
        [--min_step=300]

Prints the table (run, schedule, mean/max relative error, R^2) and writes it
as Markdown and JSON with a PNG of predicted vs observed curves into --out
(default: the first fit run's plots/).
"""

from absl import app
from absl import flags

from experiments import cli
from wsd_jax.laws import report

_FIT = flags.DEFINE_list("fit", None, "Run dirs to fit on.", required=True)
_PREDICT = flags.DEFINE_list("predict", [], "Run dirs to predict.")
_LAW = flags.DEFINE_enum("law", "annealing", sorted(report.LAWS), "The law.")
_OUT = flags.DEFINE_string("out", None, "Output dir (default FIT[0]/plots).")
_METRIC = flags.DEFINE_string("metric", "eval_loss", "metrics.jsonl key.")
_MIN_STEP = flags.DEFINE_integer(
    "min_step", 0, "Fit and score only losses from this step on.")


@cli.friendly_errors
def main(argv):
  del argv
  law, rows = report.fit_and_report(_FIT.value, _PREDICT.value, _LAW.value,
                                    _OUT.value, _METRIC.value, _MIN_STEP.value)
  print(law)
  print(report.markdown_table(rows))


if __name__ == "__main__":
  app.run(main)
