"""FedHyper-G (server hypergradient LR) in the simulated bigram federation."""

import numpy as np
import pytest

from wsd_jax.adaptive import fedhyper as fh

FED = fh.make_federation(num_clients=4, vocab=8, seed=1)
KW = dict(rounds=12, local_steps=3, batch=16)


def test_federation_is_non_identical_and_loss_is_exact():
  p = np.asarray(FED.transitions)
  np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)
  assert np.abs(p[0] - p[1]).max() > 0.1
  # the uniform table's loss is log V for every language
  assert float(fh.expected_loss(np.zeros((8, 8), np.float32), FED)) == \
      pytest.approx(np.log(8), rel=1e-6)


@pytest.mark.slow
def test_fedhyper_g_server_rule():
  avg = fh.simulate(FED, method="fedavg", client_lr=2.0, **KW)
  frozen = fh.simulate(FED, method="fedhyper_g", client_lr=2.0,
                       clip=(0.0, 0.0), **KW)
  # a_t clipped to 0: server LR 1, exactly FedAvg
  np.testing.assert_allclose(frozen["loss"], avg["loss"], rtol=1e-6)
  fixed = fh.simulate(FED, method="fedhyper_g", client_lr=2.0,
                      clip=(0.5, 0.5), **KW)
  avg15 = fh.simulate(FED, method="fedavg", client_lr=2.0, server_lr=1.5, **KW)
  np.testing.assert_allclose(fixed["server_lr"], 1.5)   # a_1 = clip(0) too
  np.testing.assert_allclose(fixed["loss"], avg15["loss"], rtol=1e-5)
  hyper = fh.simulate(FED, method="fedhyper_g", client_lr=2.0, **KW)
  lrs = np.asarray(hyper["server_lr"])
  assert lrs[0] == 1.0                          # Delta_0 = 0
  assert np.all(lrs >= 0.2 - 1e-6) and np.all(lrs <= 5.0 + 1e-6)
  assert lrs[-1] > 1.0


def test_fedhyper_g_recovers_from_a_poor_client_lr():
  poor = dict(client_lr=0.5, **KW)
  avg = fh.simulate(FED, method="fedavg", **poor)
  hyper = fh.simulate(FED, method="fedhyper_g", **poor)
  assert float(hyper["loss"][-1]) < float(avg["loss"][-1])
