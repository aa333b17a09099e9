"""Fit a loss-curve law on some runs and predict others.

    python -m experiments.fit_law --fit=runs/main,runs/main/branches/d20 \
        --predict=runs/cosine --law=multipower [--out=DIR] [--metric=eval_loss] \
        [--min_step=300] [--warmup_steps=N] [--count_warmup_at_peak] [--lam=0.999] \
        [--extrapolate] [--bootstrap=64 --level=0.9]

Prints the fitted law, its convergence, any warning about the fit, the table
(run, schedule, mean/max relative error, R^2 and, with --bootstrap, the
share of each run's points inside the band), its summary per role (worst
error as the max over runs and as the mean of each run's max) and the files
written: the tables as Markdown and JSON and a PNG of predicted vs observed
curves (with the band) and their relative errors, in --out (default:
./fit_law_<law> in the current directory; runs are only read, so it must not
lie inside one). The law's options default to the runs' own (the warmup of
their schedules) and the law's (lam 0.999; warmup counted at the peak by the
annealing law, as run by the multi-power law).
"""

import warnings

from absl import flags

from experiments import cli
from wsd_jax import laws
from wsd_jax.laws import fitting
from wsd_jax.laws import report

_FIT = flags.DEFINE_list("fit", None, "Run dirs to fit on.", required=True)
_PREDICT = flags.DEFINE_list("predict", [], "Run dirs to predict.")
_LAW = flags.DEFINE_enum("law", "annealing", sorted(report.LAWS), "The law.")
_OUT = flags.DEFINE_string(
    "out", None, "Output dir (default ./fit_law_<law>, not inside a run).")
_METRIC = flags.DEFINE_string("metric", "eval_loss", "metrics.jsonl key.")
_MIN_STEP = flags.DEFINE_integer(
    "min_step", 0, "Fit start step: fit and score only losses from it on.")
_WARMUP = flags.DEFINE_integer(
    "warmup_steps", None, "Warmup length the law assumes (default: the "
    "warmup of the runs' schedules).", lower_bound=0)
_AT_PEAK = flags.DEFINE_bool(
    "count_warmup_at_peak", None, "Count warmup steps at the peak LR "
    "(default: the law's; Tissue et al.'s script does).")
_LAM = flags.DEFINE_float(
    "lam", None, "Annealing momentum of the annealing law (default 0.999).")
_METHOD = flags.DEFINE_enum("method", "lbfgs", list(fitting.METHODS),
                            "lbfgs, or adamw (Luo et al.'s fitting code).")
_PRIOR = flags.DEFINE_list(
    "prior_weight", ["0"], "Weight(s) of the prior on the law's shape "
    "parameters; several need --select=tail.")
_SELECT = flags.DEFINE_enum("select", "objective", list(fitting.SELECTS),
                            "Choose the fit by its objective or by how well "
                            "it predicts held-out tails of the fit runs.")
_TAIL = flags.DEFINE_float("tail_fraction", 0.25,
                           "Share of each fit run held out by --select=tail.")
_EARLY = flags.DEFINE_bool("early_stopping", False,
                           "Stop the fit where the tail error is lowest.")
_EXTRAPOLATE = flags.DEFINE_bool(
    "extrapolate", False, "Fit for predicting longer runs (laws.EXTRAPOLATE: "
    "the prior weight chosen on held-out tails); --prior_weight, --select "
    "and --tail_fraction given explicitly still win.")
_BOOTSTRAP = flags.DEFINE_integer(
    "bootstrap", 0, "Bootstrap refits for a prediction band (0: none).",
    lower_bound=0)
_KIND = flags.DEFINE_enum("bootstrap_kind", "blocks", ["blocks", "curves"],
                          "Resample blocks of points or whole runs.")
_LEVEL = flags.DEFINE_float("level", 0.9, "The band's nominal coverage.")


def fit_options() -> dict:
  """Law.fit's keyword arguments from the flags (unset: the defaults)."""
  options = {"method": _METHOD.value, "select": _SELECT.value,
             "tail_fraction": _TAIL.value,
             "early_stopping": _EARLY.value, "bootstrap": _BOOTSTRAP.value,
             "bootstrap_kind": _KIND.value}
  try:
    weights = [float(w) for w in _PRIOR.value]
  except ValueError:
    raise ValueError(f"--prior_weight={','.join(_PRIOR.value)}: give numbers, "
                     "e.g. --prior_weight=0,0.01,0.1,1") from None
  options["prior_weight"] = weights[0] if len(weights) == 1 else weights
  if _EXTRAPOLATE.value:
    options.update({k: v for k, v in laws.EXTRAPOLATE.items()
                    if flags.FLAGS[k].using_default_value})
  for key, holder in (("warmup_steps", _WARMUP), ("lam", _LAM),
                      ("count_warmup_at_peak", _AT_PEAK)):
    if holder.value is not None:
      options[key] = holder.value
  return options


@cli.friendly_errors
def main(argv):
  del argv
  with warnings.catch_warnings():
    # Printed below, one line each, from fit_info.
    warnings.simplefilter("ignore", fitting.FitWarning)
    result = report.fit_and_report(_FIT.value, _PREDICT.value, _LAW.value,
                                   _OUT.value, _METRIC.value, _MIN_STEP.value,
                                   level=_LEVEL.value, **fit_options())
  law = result.law
  info = law.fit_info
  print(law)
  print(f"options: {law.options}")
  print(f"fit: {info['method']}, {info['nit']} iterations, {info['nfev']} "
        f"evaluations, converged: {info['success']}"
        + (" (early stopping)" if info["early_stopped"] else "")
        + f" ({info['message']}), R^2 {info['r2']:.5f}, prior weight "
        f"{info['prior_weight']:g}"
        + (" (chosen on the tails)" if info["select"] == "tail" else ""))
  for note in info["warnings"]:
    print(f"warning: {note}")
  print(report.markdown_table(result.rows, report.COLUMNS + (
      ("coverage",) if law.ensemble else ())))
  print(report.markdown_table(result.summary, report.SUMMARY_COLUMNS))
  print(report.SUMMARY_NOTE)
  for path in result.paths.values():
    print(f"wrote {path}")


if __name__ == "__main__":
  cli.run(main)
