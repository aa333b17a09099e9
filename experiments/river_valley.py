"""The river-valley study (Wen et al., arXiv 2410.05192) on the bigram corpus.

    python -m experiments.river_valley --workdir=DIR [--quick]

Trains WSD (main branch + decay branches), cosine, WSD-S and cyclic cosine
runs over several seeds, then writes DIR/report.md with every figure (PNG)
and table (Markdown + JSON) and DIR/claims.json. Rerunning reuses finished
runs. Settings: configs/river_valley.py.
"""

import time

from absl import app
from absl import flags

from configs import river_valley as river_valley_config
from wsd_jax.studies import river_valley
from wsd_jax.studies import river_valley_report

_WORKDIR = flags.DEFINE_string("workdir", None, "Study directory.",
                               required=True)
_QUICK = flags.DEFINE_bool("quick", False, "Small budgets, 2 seeds (< 90 s).")


def main(argv):
  del argv
  start = time.perf_counter()
  config = river_valley_config.get_config("quick" if _QUICK.value else "")
  plan = river_valley.run_all(config, _WORKDIR.value)
  result = river_valley_report.write(
      plan, _WORKDIR.value,
      {"start": start, "train_s": time.perf_counter() - start})
  for c in result["claims"]:
    print(f"[river_valley] {'REPRODUCED' if c['reproduced'] else 'NOT reproduced'}"
          f": {c['claim']}")
  print(f"[river_valley] report: {_WORKDIR.value}/report.md "
        f"({result['wall_time_s']['total_s']:.0f} s)")


if __name__ == "__main__":
  app.run(main)
