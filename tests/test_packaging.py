"""What a wheel of the project holds: every data file the library reads
must be declared as package data, or an installed wsd_jax (Colab) lacks it."""

import pathlib
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_every_data_file_in_the_packages_is_package_data():
  pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
  declared = pyproject["tool"]["setuptools"].get("package-data", {})
  missing = []
  for top in ("wsd_jax", "experiments", "configs"):
    for path in sorted((ROOT / top).rglob("*")):
      if (path.is_dir() or path.suffix in (".py", ".pyc")
          or "__pycache__" in path.parts):
        continue
      package = ".".join(path.parent.relative_to(ROOT).parts)
      if path.name not in declared.get(package, []):
        missing.append(f"{package}: {path.name}")
  assert not missing, f"not in [tool.setuptools.package-data]: {missing}"
