"""Shared test settings: strict rank promotion, as in nanodo's tests, and
temporary files of libraries (TFDS mocks, ...) kept under pytest's tmp dir."""

import tempfile

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(autouse=True)
def _library_tempdir(tmp_path_factory, monkeypatch):
  monkeypatch.setattr(tempfile, "tempdir",
                      str(tmp_path_factory.mktemp("libtmp")))
