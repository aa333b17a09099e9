#!/usr/bin/env bash
# The GPU benchmark suite: one command, under 7 minutes on one H100 including
# compilation. Everything it prints also goes to $OUT/gpu_suite.log.
#
#   bash bench/gpu_suite.sh                      # the GPU machine
#   GPU_SUITE_SMALL=1 bash bench/gpu_suite.sh    # plumbing check, CPU, ~3 min
#
# On the GPU machine it first installs the wheels in .whl/ (see
# shared/device/wheels.sh) that its image lacks. Each bench runs under a
# timeout cut to what is left of GPU_SUITE_BUDGET seconds (default 400), so a
# slow one cannot eat the others' time; a bench that fails or times out is
# reported and the suite goes on. The exit status is the number of failures.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_suite}
mkdir -p "$OUT"
LOG="$OUT/gpu_suite.log"
: > "$LOG"
BUDGET=${GPU_SUITE_BUDGET:-400}
START=$SECONDS
FAILED=()

say() { echo "$*" | tee -a "$LOG"; }

# run NAME TIMEOUT_S COMMAND...: runs a bench under min(TIMEOUT_S, budget left).
run() {
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET - (SECONDS - START)))
  if ((left < limit)); then limit=$left; fi
  if ((limit < 15)); then
    say "=== $name: SKIPPED (suite budget of ${BUDGET}s spent)"
    FAILED+=("$name(skipped)")
    return
  fi
  say "=== $name (timeout ${limit}s): $*"
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" 2>&1 | grep -v -E \
    "^[IW][0-9]{4} |Unable to initialize backend|^\s*$" | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  say "=== $name: exit $rc after $((SECONDS - t0))s"
  if ((rc != 0)); then FAILED+=("$name(rc=$rc)"); fi
}

if [[ -n "${GPU_SUITE_SMALL:-}" ]]; then
  export JAX_PLATFORMS=cpu
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
  BIG=(--size=micro --vocab=512 --batch=8 --seq_len=64)
  NANO=(--size=nano --vocab=512)
  SHORT=(--steps=5 --warmup=1)
  SCHED=(--size=nano --vocab=512 --steps=5 --repeats=2)
  CKPT=(--size=nano --vocab=512 --save_every=5 --saves=2 --warmup=1)
  POP=(--members=2 --steps=5 --e2e=false)
  POP_GPT=(--workload=gpt_nano --members=2 --steps=3 --e2e=false)
  XLA_ATTN=()
else
  if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile \
      --no-cache-dir --upgrade --target /tmp/site .whl/*.whl 2>&1 | tail -3
  fi
  export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
  BIG=(--size=124m --seq_len=1024 --batch=32 --dtype=bfloat16 --attention=cudnn)
  NANO=(--size=nano)
  SHORT=(--steps=30 --warmup=5)
  SCHED=(--size=micro --steps=50 --repeats=5)
  CKPT=(--size=124m --seq_len=1024 --batch=32 --dtype=bfloat16 --attention=cudnn
        --save_every=100 --saves=3)
  POP=(--members=128 --steps=100 --e2e=false)
  POP_GPT=(--workload=gpt_nano --members=16 --steps=30 --e2e=false)
  XLA_ATTN=(--attention=xla)
fi
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
Q=(--verbosity=-1)

say "=== gpu_suite $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD 2>/dev/null)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
  2>&1 | tee -a "$LOG" || true
python3 -c "import jax, flax, optax, orbax.checkpoint as o; \
print('jax', jax.__version__, 'flax', flax.__version__, 'optax', \
optax.__version__, 'orbax', o.__version__, jax.devices())" 2>&1 | tee -a "$LOG"

run step_throughput_big 150 python3 -m bench.step_throughput "${BIG[@]}" \
  "${SHORT[@]}" "${Q[@]}"
run step_throughput_big_bf16_logits 100 python3 -m bench.step_throughput \
  "${BIG[@]}" --logits_dtype=bfloat16 "${SHORT[@]}" "${Q[@]}"
run population_mlp 90 python3 -m bench.population "${POP[@]}" "${Q[@]}"
run schedule_overhead 90 python3 -m bench.schedule_overhead "${SCHED[@]}" \
  "${Q[@]}"
run checkpoint_block 150 python3 -m bench.checkpoint_block "${CKPT[@]}" "${Q[@]}"
run step_throughput_nano 60 python3 -m bench.step_throughput "${NANO[@]}" \
  "${SHORT[@]}" "${Q[@]}"
run population_gpt_nano 60 python3 -m bench.population "${POP_GPT[@]}" "${Q[@]}"
if ((${#XLA_ATTN[@]})); then  # last: cuDNN vs XLA attention, if time is left
  run step_throughput_big_xla_attention 120 python3 -m bench.step_throughput \
    "${BIG[@]}" "${XLA_ATTN[@]}" "${SHORT[@]}" "${Q[@]}"
fi

say "=== done in $((SECONDS - START))s; failed: ${FAILED[*]:-none}"
exit ${#FAILED[@]}
