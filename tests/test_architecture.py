"""The layers point one way: schedules, models, data -> runs -> train ->
laws, studies, reports -> experiments. Checked on every import statement of
the library (a function-local import counts too)."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PKG = ROOT / "wsd_jax"
# What each layer may not import.
FORBIDDEN = {
    "schedules": ("runs", "train", "laws", "studies", "reports", "plots",
                  "models", "data", "adaptive"),
    "models": ("runs", "train", "laws", "studies", "reports", "plots"),
    "data": ("runs", "train", "laws", "studies", "reports", "plots"),
    "runs": ("train", "laws", "studies", "reports", "plots", "adaptive"),
    "train": ("laws", "studies", "reports", "plots"),
    "laws": ("train", "studies", "reports"),
    "plots": ("runs", "train", "laws", "studies", "reports"),
}


def imports(path: pathlib.Path) -> set[str]:
  """``wsd_jax.X`` subpackages and ``experiments`` imported by a module."""
  out = set()
  for node in ast.walk(ast.parse(path.read_text())):
    names = []
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
      names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    for name in names:
      parts = name.split(".")
      if parts[0] == "experiments":
        out.add("experiments")
      elif parts[0] == "wsd_jax" and len(parts) > 1:
        out.add(parts[1])
  return out


def layer(path: pathlib.Path) -> str:
  rel = path.relative_to(PKG).parts
  return rel[0].removesuffix(".py")


MODULES = sorted(PKG.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_layers_point_down(path):
  found = imports(path)
  assert "experiments" not in found, f"{path} imports an app"
  bad = found & set(FORBIDDEN.get(layer(path), ()))
  assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_the_check_sees_imports():
  assert imports(PKG / "train" / "loop.py") >= {"runs", "data"}
  assert "runs" in imports(PKG / "laws" / "curve.py")
