#!/usr/bin/env bash
# The GPU benchmark suite: one command, one log ($OUT/gpu_suite.log), about
# 6.5 minutes on one H100 including compilation (GPU_SUITE_BUDGET=390 s; with
# the machine's start, within 8 minutes of device time).
#
#   bash bench/gpu_suite.sh                      # the GPU machine
#   GPU_SUITE_SMALL=1 GPU_SUITE_BUDGET=1500 bash bench/gpu_suite.sh
#                                                # plumbing check, CPU, tiny
#   BASELINE_REV=abc123 bash bench/gpu_suite.sh  # baseline commit (HEAD~1)
#
# Parts, in order (each under its own timeout, cut to what is left of the
# budget; a part that fails or times out is reported and the suite goes on):
#   1. GPT-124M step throughput and MFU (batch 64 x 1024, bf16, cuDNN), then
#      the same bench of the baseline commit, checked out into a temporary
#      git worktree (or read from .baseline/, made here by
#      `bash bench/gpu_suite.sh --prepare-baseline [REV]` where the GPU
#      machine has no git history), in the same run on the same GPU;
#   2. the step of configs/wsd_s.py:size=124m (batch 512 = 8 microbatches,
#      vocab 32768) and the remat variants, with their peak memory;
#   3. configs/wsd_s.py:size=124m_short: the WSD-S study end to end on the
#      offline BPE corpus, with gradient accumulation and remat;
#   4. if time is left (optional, skipped without failing): an AlgoPerf
#      study of 5 trials vs one trial (bench/algoperf_study.py), then the
#      older benches (schedule overhead, populations, checkpoint, XLA
#      attention).
# The exit status is the number of required parts that failed.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

if [[ "${1:-}" == "--prepare-baseline" ]]; then  # here, before a device run
  rev=$(git rev-parse --short "${2:-HEAD~1}") || exit 1
  rm -rf .baseline && mkdir -p .baseline
  git archive "$rev" bench wsd_jax configs | tar -x -C .baseline
  echo "$rev" > .baseline/REVISION
  grep -qx '/.baseline/' .git/info/exclude 2>/dev/null ||
    echo '/.baseline/' >> .git/info/exclude
  echo "baseline $rev in .baseline/ (carry it to the GPU machine)"
  exit 0
fi

OUT=${OUT:-/tmp/gpu_suite}
mkdir -p "$OUT"
LOG="$OUT/gpu_suite.log"
: > "$LOG"
BUDGET=${GPU_SUITE_BUDGET:-390}
START=$SECONDS
FAILED=()
SKIPPED=()
TMP=$(mktemp -d)
trap 'git worktree remove --force "$TMP/baseline" >/dev/null 2>&1; rm -rf "$TMP"' EXIT

say() { echo "$*" | tee -a "$LOG"; }

# run [--optional] NAME TIMEOUT_S COMMAND...: runs a part under
# min(TIMEOUT_S, budget left); an optional part skipped for lack of time is
# not a failure.
run() {
  local optional=
  if [[ "$1" == "--optional" ]]; then optional=1; shift; fi
  local name=$1 limit=$(($2 * TIME_SCALE))
  shift 2
  local left=$((BUDGET - (SECONDS - START)))
  if ((left < limit)); then limit=$left; fi
  if ((limit < 15)); then
    say "=== $name: SKIPPED (suite budget of ${BUDGET}s spent)"
    if [[ -n $optional ]]; then SKIPPED+=("$name"); else
      FAILED+=("$name(skipped)"); fi
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

# The baseline commit's tree: a git worktree, else .baseline/, else none.
baseline_tree() {
  local rev=${BASELINE_REV:-HEAD~1}
  if git rev-parse --verify -q "$rev^{commit}" > /dev/null 2>&1 &&
      git worktree add -q --detach "$TMP/baseline" "$rev" > /dev/null 2>&1; then
    echo "$TMP/baseline"
  elif [[ -f .baseline/REVISION ]]; then
    echo "$ROOT/.baseline"
  fi
}

TIME_SCALE=${GPU_SUITE_TIME_SCALE:-1}  # x every part's timeout
if [[ -n "${GPU_SUITE_SMALL:-}" ]]; then
  export JAX_PLATFORMS=cpu
  TIME_SCALE=${GPU_SUITE_TIME_SCALE:-3}  # a laptop CPU compiles slowly
  SITE=
  BIG=(--size=micro --vocab=512 --seq_len=64)
  B64=(--batch=8)
  CONFIG_STEP=(--batch=16 --grad_accum=2 --vocab=512)
  DOTS=(--batch=8 --remat=dots)
  BLOCK=(--batch=8 --remat=block)
  SHORT=(--steps=3 --warmup=1)
  WSD_S=(--config.train_config.model.size=nano
         --config.train_config.model.dtype=float32
         --config.train_config.model.attention_impl=xla
         --config.train_config.data.seq_len=32
         --config.train_config.data.vocab_size=512
         --config.train_config.data.corpus=stdlib
         --config.train_config.data.corpus_max_bytes=200000)
  NANO=(--size=nano --vocab=512)
  SCHED=(--size=nano --vocab=512 --steps=5 --repeats=2)
  CKPT=(--size=nano --vocab=512 --save_every=5 --saves=2 --warmup=1)
  POP=(--members=2 --steps=5 --e2e=false)
  POP_GPT=(--workload=gpt_nano --members=2 --steps=3 --e2e=false)
  AP_STUDY=(--workloads=bigram_quick --trials=2)
  XLA_ATTN=()
else
  if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile \
      --no-cache-dir --upgrade --target /tmp/site .whl/*.whl 2>&1 | tail -3
  fi
  SITE=/tmp/site:
  BIG=(--size=124m --seq_len=1024 --dtype=bfloat16 --attention=cudnn)
  B64=(--batch=64)
  CONFIG_STEP=(--batch=512 --grad_accum=8 --vocab=32768 --steps=8 --warmup=2)
  DOTS=(--batch=128 --remat=dots --steps=10 --warmup=2)
  BLOCK=(--batch=64 --remat=block)
  SHORT=(--steps=20 --warmup=3)
  WSD_S=()
  NANO=(--size=nano)
  SCHED=(--size=micro --steps=50 --repeats=5)
  CKPT=(--size=124m --seq_len=1024 --batch=32 --dtype=bfloat16 --attention=cudnn
        --save_every=100 --saves=3)
  POP=(--members=128 --steps=100 --e2e=false)
  POP_GPT=(--workload=gpt_nano --members=16 --steps=30 --e2e=false)
  AP_STUDY=(--workloads=mlp_text,gpt_nano --trials=5)
  XLA_ATTN=(--attention=xla)
fi
export PYTHONPATH=$SITE$ROOT${PYTHONPATH:+:$PYTHONPATH}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
Q=(--verbosity=-1)
ST=(python3 -m bench.step_throughput)

commit=$(git rev-parse --short HEAD 2>/dev/null || echo "unknown (no git)")
say "=== gpu_suite $(date -u +%FT%TZ) commit $commit budget ${BUDGET}s"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
  2>&1 | tee -a "$LOG" || true
python3 -c "import jax, flax, optax, orbax.checkpoint as o; \
print('jax', jax.__version__, 'flax', flax.__version__, 'optax', \
optax.__version__, 'orbax', o.__version__, jax.devices())" 2>&1 | tee -a "$LOG"

# 1. MFU now and at the baseline commit, same flags, same GPU.
run step_throughput_124m 90 "${ST[@]}" "${BIG[@]}" "${B64[@]}" "${SHORT[@]}" \
  "${Q[@]}"
BASE=$(baseline_tree)
if [[ -n $BASE ]]; then
  rev=$(git -C "$BASE" rev-parse --short HEAD 2>/dev/null ||
        cat "$BASE/REVISION")
  # The baseline's own code, with the flags every version of the bench takes.
  run step_throughput_124m_baseline_$rev 90 env -C "$BASE" \
    PYTHONPATH="$SITE$BASE" "${ST[@]}" "${BIG[@]}" "${B64[@]}" "${SHORT[@]}" \
    "${Q[@]}"
else
  say "=== step_throughput_124m_baseline: SKIPPED (no git history and no" \
    ".baseline/; see --prepare-baseline)"
  FAILED+=("baseline(none)")
fi

# 2. The 124m config's step (8 microbatches) and rematerialisation.
run step_throughput_124m_config_step 90 "${ST[@]}" "${BIG[@]}" \
  "${SHORT[@]}" "${CONFIG_STEP[@]}" "${Q[@]}"
run step_throughput_124m_remat_dots 75 "${ST[@]}" "${BIG[@]}" "${SHORT[@]}" \
  "${DOTS[@]}" "${Q[@]}"
run step_throughput_124m_remat_block 75 "${ST[@]}" "${BIG[@]}" "${SHORT[@]}" \
  "${BLOCK[@]}" "${Q[@]}"

# 3. The WSD-S study at 124M, short, on the offline BPE corpus.
# Programs the study compiles again (one per branch length) come from disk.
run wsd_s_124m_short 200 env JAX_COMPILATION_CACHE_DIR="$TMP/jax_cache" \
  python3 -m experiments.wsd_s \
  --config=configs/wsd_s.py:size=124m_short --workdir="$TMP/wsd_s_124m_short" \
  "${WSD_S[@]}" "${Q[@]}"
if [[ -f "$TMP/wsd_s_124m_short/wsd_s.json" ]]; then
  cp "$TMP/wsd_s_124m_short/wsd_s.md" "$OUT/wsd_s_124m_short.md"
  python3 - "$TMP/wsd_s_124m_short" <<'EOF' 2>&1 | tee -a "$LOG"
import json, sys
from wsd_jax.runs import rundir
rows = rundir.read_metrics(sys.argv[1] + "/wsd/seed0")
steps = [r for r in rows if r.get("step_time_s")]
if steps:
  r = steps[-1]
  print(f"wsd_s_124m_short main run: step {r['step']}, {r['step_time_s']:.3f} "
        f"s/step, {r['tokens'] / r['train_time_s']:,.0f} tokens/s over "
        f"{r['train_time_s']:.0f} s of training (compile included)")
print("data:", json.load(open(sys.argv[1] + "/wsd_s.json"))["info"])
EOF
fi

# 4. Older benches, if time is left; first the AlgoPerf study of 5 trials
#    vs one trial (issue 13's GPU figure).
run --optional algoperf_study 120 python3 -m bench.algoperf_study \
  "${AP_STUDY[@]}" "${Q[@]}"
run --optional schedule_overhead 60 python3 -m bench.schedule_overhead \
  "${SCHED[@]}" "${Q[@]}"
run --optional population_mlp 45 python3 -m bench.population "${POP[@]}" \
  "${Q[@]}"
run --optional population_gpt_nano 45 python3 -m bench.population \
  "${POP_GPT[@]}" "${Q[@]}"
run --optional step_throughput_nano 30 "${ST[@]}" "${NANO[@]}" \
  "${SHORT[@]}" "${Q[@]}"
if ((${#XLA_ATTN[@]})); then
  run --optional step_throughput_124m_xla_attention 60 "${ST[@]}" \
    "${BIG[@]}" "${B64[@]}" "${XLA_ATTN[@]}" "${SHORT[@]}" "${Q[@]}"
fi
run --optional checkpoint_block 90 python3 -m bench.checkpoint_block \
  "${CKPT[@]}" "${Q[@]}"

say "=== summary (tokens/s, MFU against the dense bf16 peak, memory):"
awk '/^=== step_throughput[^ ]* \(timeout/ {print "--- " $2}
     /^step_throughput size=|^memory per device/ {print}' "$LOG" \
  > "$TMP/summary"
tee -a "$LOG" < "$TMP/summary"
say "=== done in $((SECONDS - START))s; failed: ${FAILED[*]:-none};" \
  "skipped for time: ${SKIPPED[*]:-none}"
exit ${#FAILED[@]}
