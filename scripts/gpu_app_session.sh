#!/usr/bin/env bash
# One call of the device tool on a GPU host with no network: the app's speed there (issue 5's bar, 8
# concurrent requests at least 3x faster than one by one), `bench/app_speed.py --device cuda`. About 2
# minutes of device time. Results land in $OUT.
#
# Prepared here (ignored by git, carried to the host; carry [".whl-app", ".carry"]):
#   python -m scripts.slim_wheels --out .whl-app                  # gradio & co. and diffusers, slimmed: 9 MiB
#   python -m scripts.pack_minilm --out .carry/minilm.tar.gz      # the prompt encoder, int8: 11 MiB
#   python -m scripts.travel_size .whl-app .carry                 # under 64 MiB? (63.0 in session 12)
# Run there:  OUT=$OUT bash scripts/gpu_app_session.sh
set -u
PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu-out}
WHEELS=.whl-app MODULES="gradio diffusers"
source scripts/gpu_host.sh
export GRADIO_ANALYTICS_ENABLED=False
timeout "${LIMIT:-400}" $PY -m bench.app_speed --device "${DEVICE:-cuda}" --repeats "${REPEATS:-10}" >"$OUT/app-speed.md" 2>"$OUT/app-speed.log"
echo "bench exit $?" | tee -a "$OUT/host.txt"
cat "$OUT/app-speed.md"
