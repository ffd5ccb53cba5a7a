#!/usr/bin/env bash
# One call on a GPU host with no network (docs/gpu-host.md):
# train the diffusion model and the GAN side by side for $MINUTES each (resuming the committed weights:
# the shipped diffusion model, and the shipped GAN),
# then bench/gpu_speed.py in what is left of $BUDGET seconds. Results land in $OUT.
#
# Prepared here (ignored by git, carried to the host):
#   python -m scripts.gpu.pack_minilm --out .carry/minilm.tar.gz          # the prompt encoder, int8: 11 MB
#   pip download --no-deps diffusers==0.42.1 importlib_metadata -d .whl  (docs/gpu-host.md)
#   python -m scripts.gpu.travel_size .whl .carry                          # under 64 MiB?
set -u
start=$(date +%s)
MINUTES=${MINUTES:-5}
BUDGET=${BUDGET:-560}
PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu-out}
RUNS=${RUNS:-/tmp/runs}
DIFF_BATCH=${DIFF_BATCH:-512} GAN_BATCH=${GAN_BATCH:-256}
DIFF_WORKERS=${DIFF_WORKERS:-10} GAN_WORKERS=${GAN_WORKERS:-4}
DIFF_INIT=${DIFF_INIT:-assets/shapes-diffusion}
POOL=${POOL:-100000}  # training examples drawn once (rendered and encoded) at the start
# The relation recipe: coordinate inputs (in the shipped UNet), relations and counts drawn more
# often, half of each batch at the noisiest timesteps where a layout is decided.
DIFF_RECIPE=(--kind-weights relation=2.5,count=1.5 --high-noise 0.5)
mkdir -p "$RUNS"
WHEELS=.whl MODULES="diffusers transformers"
source scripts/gpu/host_setup.sh
export TQDM_MININTERVAL=5

common=(--steps 1000000 --pool-size "$POOL" --threads 2 --checkpoint-every 1000 --eval-every 0 --max-minutes "$MINUTES")
$PY -m train diffusion --out "$RUNS/diffusion" --init "$DIFF_INIT" --batch-size "$DIFF_BATCH" --lr 4e-4 \
  --workers "$DIFF_WORKERS" "${DIFF_RECIPE[@]}" "${common[@]}" >"$OUT/diffusion.log" 2>&1 &
d=$!
$PY -m train gan --out "$RUNS/gan" --init assets/shapes-gan --batch-size "$GAN_BATCH" \
  --workers "$GAN_WORKERS" "${common[@]}" >"$OUT/gan.log" 2>&1 &
g=$!
wait $d; echo "diffusion exit $?" | tee -a "$OUT/host.txt"
wait $g; echo "gan exit $?" | tee -a "$OUT/host.txt"
tar cf "$OUT/models.tar" -C "$RUNS" diffusion/model diffusion/log.jsonl gan/model gan/log.jsonl 2>>"$OUT/host.txt"

left=$((BUDGET - ($(date +%s) - start)))
echo "training done at $(($(date +%s) - start)) s; bench gets ${left} s" | tee -a "$OUT/host.txt"
if ((left > 30)); then
  timeout "$left" $PY -m bench.gpu_speed --repeats 3 --out "$OUT/gpu-speed.md" ${BENCH_ARGS:-} >"$OUT/gpu-speed.log" 2>&1
  echo "bench exit $?" | tee -a "$OUT/host.txt"
fi
# Files come back at most 16 MiB each: split the models.
split -b 15M "$OUT/models.tar" "$OUT/models.tar." && rm "$OUT/models.tar"
ls -la "$OUT"
