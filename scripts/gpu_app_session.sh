#!/usr/bin/env bash
# One call of the device tool on a GPU host with no network: the app's speed there (issue 5's bar, 8
# concurrent requests at least 3x faster than one by one), `bench/app_speed.py --device cuda`. About 2
# minutes of device time. Results land in $OUT.
#
# Prepared here (ignored by git, carried to the host; carry [".whl-app", ".carry"]):
#   python scripts/slim_wheels.py --out .whl-app                  # gradio & co. and diffusers, slimmed: 9 MiB
#   python scripts/pack_minilm.py --out .carry/minilm.tar.gz      # the prompt encoder, int8: 11 MiB
#   python scripts/travel_size.py .whl-app .carry                 # under 64 MiB? (63.1 in session 11)
# Run there:  OUT=$OUT bash scripts/gpu_app_session.sh
set -u
PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
if [[ -d .whl-app ]]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl-app/*.whl \
    && export PYTHONPATH=/tmp/site || exit 1
fi
$PY scripts/pack_minilm.py --unpack .carry/minilm.tar.gz --to /tmp/minilm && export WORDBRUSH_MINILM_DIR=/tmp/minilm || exit 1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee "$OUT/host.txt"
$PY -c "import torch, gradio, diffusers; print('torch', torch.__version__, 'gradio', gradio.__version__, 'diffusers', diffusers.__version__)" | tee -a "$OUT/host.txt"
timeout "${LIMIT:-400}" $PY bench/app_speed.py --device "${DEVICE:-cuda}" --repeats "${REPEATS:-10}" >"$OUT/app-speed.md" 2>"$OUT/app-speed.log"
echo "bench exit $?" | tee -a "$OUT/host.txt"
cat "$OUT/app-speed.md"
