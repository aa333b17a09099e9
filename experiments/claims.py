r"""Every study's verdicts on the papers' claims, checked again from their
numbers and rendered as one table (``wsd_jax.studies.claims``).

  python -m experiments.claims                  # print the table
  python -m experiments.claims --write          # and put it in README.md

The results are the studies' JSON files committed under ``docs/``; a verdict
that its own interval and margin do not give is an error naming the claim.
"""

import os

from absl import flags

from experiments import cli
from wsd_jax.studies import claims

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_DOCS = flags.DEFINE_string("docs", os.path.join(ROOT, "docs"),
                            "Directory of the studies' results JSON files.")
_README = flags.DEFINE_string("readme", os.path.join(ROOT, "README.md"),
                              "The README whose claims block --write updates.")
_WRITE = flags.DEFINE_bool("write", False, "Rewrite the README's block.")


@cli.friendly_errors
def main(argv):
  del argv
  block = claims.block(_DOCS.value)
  print(block)
  if _WRITE.value:
    with open(_README.value) as f:
      text = f.read()
    with open(_README.value, "w") as f:
      f.write(claims.replace_block(text, block))
    print(f"[claims] wrote the table into {_README.value}")


if __name__ == "__main__":
  cli.run(main)
