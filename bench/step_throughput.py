r"""Tokens/s, step time, MFU and memory of the library's GPT train step.

    python -m bench.step_throughput --size=nano                  # CPU
    python -m bench.step_throughput --size=124m --seq_len=1024 --batch=64 \
        --dtype=bfloat16 --attention=cudnn                       # one H100
    python -m bench.step_throughput --size=124m --batch=256 --grad_accum=4 \
        --remat=dots                     # 4 microbatches of 64, remat "dots"

The step is the one training uses (``models.build`` + ``train_step`` jitted as the trainer does:
AdamW, grad clipping, the schedule as an argument, the state donated),
sharded over all devices by ``config.mesh`` rules (``--fsdp``). The batch is
synthetic and stays on the device. Steps are dispatched back to back and
timed after ``--warmup`` steps (compilation excluded) up to a final
``block_until_ready``. MFU = ``flops_per_token(cfg, T)`` x tokens/s over the
dense bf16 peak of the devices (``--peak_flops`` per device to override;
n/a on CPU). ``--batch`` is the global batch; ``--grad_accum=K`` splits it
into K microbatches inside the step (``train.grad_accum_steps``) and
``--remat`` rematerialises each block (``model.remat``). Memory: the
compiled step's own buffers (XLA's memory analysis: arguments, outputs and
temporaries, on any backend) and the device's peak bytes in use
(``memory_stats()``; n/a where the backend reports none, as on CPU).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import app, flags
from flax import nnx

from wsd_jax import models, schedules
from wsd_jax.train import config as config_lib
from wsd_jax.train import sharding
from wsd_jax.train import state as state_lib
from wsd_jax.train.step import make_optimizer, train_step

# Dense bf16 peak FLOP/s per chip, matched against ``device.device_kind``.
PEAK_FLOPS = (("H200", 989e12), ("H100", 989e12), ("A100", 312e12),
              ("L4", 121e12), ("v6", 918e12), ("v5p", 459e12),
              ("v5 lite", 197e12), ("v5e", 197e12), ("v4", 275e12))
# size: (seq_len, batch) defaults
DEFAULTS = {"nano": (128, 16), "micro": (256, 16), "mini": (512, 16),
            "124m": (1024, 16)}

# The model flags are shared by the other step benches (they import them).
SIZE = flags.DEFINE_enum("size", "nano", list(DEFAULTS), "GPT preset.")
SEQ_LEN = flags.DEFINE_integer("seq_len", None, "Tokens per row (default: "
                                "the size's).")
BATCH = flags.DEFINE_integer("batch", None, "Rows per step, all devices.")
STEPS = flags.DEFINE_integer("steps", 20, "Timed steps.")
WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps after compiling.")
DTYPE = flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"],
                           "Compute dtype (default: bfloat16 on GPU/TPU).")
ATTENTION = flags.DEFINE_enum("attention", None, ["xla", "cudnn"],
                               "jax.nn.dot_product_attention implementation "
                               "(default: cudnn on GPU with bf16).")
VOCAB = flags.DEFINE_integer("vocab", 50304, "Vocabulary size.")
LOGITS_DTYPE = flags.DEFINE_enum("logits_dtype", "float32",
                                 ["float32", "bfloat16"],
                                 "dtype of the logits the model returns.")
FSDP = flags.DEFINE_integer("fsdp", 1, "config.mesh.fsdp.")
REMAT = flags.DEFINE_enum("remat", "none", list(models.gpt.REMAT_POLICIES),
                          "config.model.remat: what each block keeps for the "
                          "backward pass.")
GRAD_ACCUM = flags.DEFINE_integer("grad_accum", 1,
                                  "config.train.grad_accum_steps: microbatches "
                                  "per --batch.")
PEAK = flags.DEFINE_float("peak_flops", None, "Peak FLOP/s per device.")


@dataclasses.dataclass
class Bench:
  """A GPT train step ready to run: state, jitted step and a device batch."""
  cfg: models.GPTConfig
  seq_len: int
  batch_size: int
  state: Any
  step_fn: Any
  batch: dict
  grad_accum_steps: int = 1
  compile_s: float = 0.0
  memory: dict | None = None  # XLA's memory analysis of the compiled step

  @property
  def tokens_per_step(self) -> int:
    return self.batch_size * self.seq_len


def default_dtype_and_attention(dtype: str | None, attention: str | None):
  """bf16 and cuDNN attention on a GPU, bf16 on TPU, float32 on CPU."""
  platform = jax.default_backend()
  if dtype is None:
    dtype = "float32" if platform == "cpu" else "bfloat16"
  if attention is None and platform == "gpu" and dtype == "bfloat16":
    attention = "cudnn"
  return dtype, attention


def build(size: str, *, seq_len: int | None = None, batch: int | None = None,
          dtype: str | None = None, attention: str | None = None,
          vocab: int = 50304, fsdp: int = 1, seed: int = 0,
          logits_dtype: str = "float32", remat: str = "none",
          grad_accum_steps: int = 1) -> Bench:
  """Builds the GPT ``size`` and its train step through the library."""
  seq_len = seq_len or DEFAULTS[size][0]
  batch = batch or DEFAULTS[size][1]
  dtype, attention = default_dtype_and_attention(dtype, attention)
  model_config = ml_collections.ConfigDict(dict(
      name="gpt", size="small" if size == "124m" else size, dtype=dtype,
      attention_impl=attention, max_seq_len=seq_len,
      logits_dtype=logits_dtype, remat=remat))
  model = models.build(model_config, vocab_size=vocab, max_seq_len=seq_len,
                       rngs=nnx.Rngs(seed))
  graphdef, params = nnx.split(model)
  tx = make_optimizer(ml_collections.ConfigDict(dict(
      name="adamw", b1=0.9, b2=0.95, weight_decay=0.1)))
  mesh = sharding.make_mesh(ml_collections.ConfigDict(dict(data=-1,
                                                           fsdp=fsdp)))
  sharding.check_batch_size(mesh, batch)
  config_lib.check_grad_accum(ml_collections.ConfigDict(dict(
      train=dict(grad_accum_steps=grad_accum_steps),
      data=dict(batch_size=batch))), mesh=mesh)
  state = state_lib.create(params, tx, seed)
  state_sh = sharding.state_sharding(mesh, state)
  state = jax.device_put(state, state_sh)
  batch_sh = sharding.batch_sharding(mesh)
  tokens = np.random.default_rng(seed).integers(
      0, vocab, (batch, seq_len + 1), dtype=np.int32)
  device_batch = jax.device_put(
      {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}, batch_sh)
  step_fn = jax.jit(
      functools.partial(train_step, graphdef=graphdef, tx=tx, grad_clip=1.0,
                        tokens_per_step=batch * seq_len,
                        grad_accum_steps=grad_accum_steps),
      donate_argnums=(0,), in_shardings=(state_sh, batch_sh, None),
      out_shardings=(state_sh, None))
  return Bench(model.cfg, seq_len, batch, state, step_fn, device_batch,
               grad_accum_steps)


def build_from_flags() -> Bench:
  return build(SIZE.value, seq_len=SEQ_LEN.value, batch=BATCH.value,
               dtype=DTYPE.value, attention=ATTENTION.value, vocab=VOCAB.value,
               fsdp=FSDP.value, logits_dtype=LOGITS_DTYPE.value,
               remat=REMAT.value, grad_accum_steps=GRAD_ACCUM.value)


def compile_and_warm(b: Bench, schedule, warmup: int) -> None:
  """Compiles (timed in ``b.compile_s``, memory analysis in ``b.memory``)
  and runs ``warmup`` more steps."""
  start = time.perf_counter()
  compiled = b.step_fn.lower(b.state, b.batch, schedule).compile()
  b.memory = compiled_memory(compiled)
  b.state, m = b.step_fn(b.state, b.batch, schedule)
  jax.block_until_ready(m)
  b.compile_s += time.perf_counter() - start
  run_steps(b, schedule, warmup)


def compiled_memory(compiled) -> dict | None:
  """Bytes of a compiled program's arguments, outputs (less what aliases
  the donated arguments) and temporaries, per device; None if the backend
  gives no analysis."""
  try:
    m = compiled.memory_analysis()
  except (NotImplementedError, jax.errors.JaxRuntimeError):
    return None
  if m is None:
    return None
  return {"arguments": m.argument_size_in_bytes,
          "outputs": m.output_size_in_bytes - m.alias_size_in_bytes,
          "temporaries": m.temp_size_in_bytes}


def peak_bytes_in_use(device=None) -> int | None:
  """The device's peak bytes in use so far (GPU, TPU); None on CPU."""
  stats = (device or jax.devices()[0]).memory_stats()
  return (stats or {}).get("peak_bytes_in_use")


def memory_line(b: Bench) -> str:
  """The step's memory: XLA's plan and the device's measured peak."""
  mib = lambda n: f"{n / 2**20:,.0f} MiB"
  plan = ("n/a" if b.memory is None else
          f"{mib(sum(b.memory.values()))} (arguments "
          f"{mib(b.memory['arguments'])}, temporaries "
          f"{mib(b.memory['temporaries'])})")
  peak = peak_bytes_in_use()
  return (f"memory per device: compiled step {plan}; peak in use "
          f"{'n/a (the backend reports none)' if peak is None else mib(peak)}")


def run_steps(b: Bench, schedule, n: int) -> float:
  """Seconds for ``n`` steps dispatched back to back (state updated)."""
  start = time.perf_counter()
  for _ in range(n):
    b.state, _ = b.step_fn(b.state, b.batch, schedule)
  jax.block_until_ready(b.state)
  return time.perf_counter() - start


def peak_flops(device=None) -> float | None:
  """Dense bf16 peak FLOP/s of one device, or ``None`` if unknown (CPU)."""
  kind = (device or jax.devices()[0]).device_kind
  for key, peak in PEAK_FLOPS:
    if key.lower() in kind.lower():
      return peak
  return None


def report(b: Bench, seconds: float, steps: int,
           peak: float | None = None) -> dict:
  """tokens/s, step time and MFU (``None`` when the peak is unknown)."""
  step_s = seconds / steps
  tokens_per_s = b.tokens_per_step / step_s
  peak = peak or peak_flops()
  flops = models.flops_per_token(b.cfg, b.seq_len) * tokens_per_s
  mfu = flops / (peak * jax.device_count()) if peak else None
  return dict(step_ms=1e3 * step_s, tokens_per_s=tokens_per_s,
              model_tflops=flops / 1e12, mfu=mfu)


def describe(b: Bench) -> str:
  cfg = b.cfg
  n = cfg.num_non_embedding_params() + cfg.vocab_size * cfg.d_model
  return (f"GPT L={cfg.num_layers} d={cfg.d_model} ({n / 1e6:.1f}M params "
          f"incl. head) seq={b.seq_len} batch={b.batch_size} "
          f"(grad_accum={b.grad_accum_steps}) remat={cfg.remat} "
          f"dtype={cfg.dtype} attention={cfg.attention_impl or 'xla'} "
          f"vocab={cfg.vocab_size} on {jax.device_count()} x "
          f"{jax.devices()[0].device_kind} (jax {jax.__version__})")


def main(argv):
  del argv
  b = build_from_flags()
  schedule = schedules.wsd(3e-4, 10_000, 1_000, warmup_steps=100)
  compile_and_warm(b, schedule, WARMUP.value)
  r = report(b, run_steps(b, schedule, STEPS.value), STEPS.value,
             PEAK.value)
  mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
  print(describe(b))
  print(f"step_throughput size={SIZE.value}: compile {b.compile_s:.1f} s, "
        f"step {r['step_ms']:.2f} ms, {r['tokens_per_s']:,.0f} tokens/s, "
        f"{r['model_tflops']:.2f} model TFLOP/s, MFU {mfu}")
  print(memory_line(b))


if __name__ == "__main__":
  app.run(main)
