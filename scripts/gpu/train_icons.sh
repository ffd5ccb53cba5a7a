#!/usr/bin/env bash
# One call on a GPU host with no network (docs/gpu-host.md): train the icons world's diffusion model for
# $MINUTES, resuming the committed weights (assets/icons-diffusion) when they exist. Results land in $OUT:
# the exported model (fp16, split in 15 MB parts) and its log. Carry the same files as train_and_bench.sh.
set -u
MINUTES=${MINUTES:-8}
PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu-out}
RUNS=${RUNS:-/tmp/runs}
BATCH=${BATCH:-512}
WORKERS=${WORKERS:-12}
POOL=${POOL:-200000}  # training examples drawn once (rendered and encoded) at the start
mkdir -p "$RUNS" "$OUT"
WHEELS=.whl MODULES="diffusers transformers"
source scripts/gpu/host_setup.sh
export TQDM_MININTERVAL=5

init=()
[ -f assets/icons-diffusion/wordbrush.json ] && init=(--init assets/icons-diffusion)
$PY -m train diffusion --size icons --out "$RUNS/icons-diffusion" "${init[@]}" --batch-size "$BATCH" --lr 4e-4 \
  --workers "$WORKERS" --pool-size "$POOL" --steps 1000000 --threads 2 --checkpoint-every 1000 \
  --eval-steps 6 --eval-guidance 2 --eval-every 0 --eval-per-category 50 --max-minutes "$MINUTES" >"$OUT/icons-diffusion.log" 2>&1
echo "icons diffusion exit $?" | tee -a "$OUT/host.txt"
tar cf "$OUT/icons.tar" -C "$RUNS" icons-diffusion/model icons-diffusion/log.jsonl 2>>"$OUT/host.txt"
split -b 15M "$OUT/icons.tar" "$OUT/icons.tar." && rm "$OUT/icons.tar"
ls -la "$OUT"
