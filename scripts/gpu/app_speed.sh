#!/usr/bin/env bash
# One call on a GPU host with no network (docs/gpu-host.md): the app's speed there (the target: 8
# concurrent requests at least 3x faster than one by one), `bench/app_speed.py --device cuda`. About 2
# minutes on the host. Results land in $OUT.
#
# Prepared here (ignored by git, carried to the host; carry [".whl-app", ".carry"]):
#   python -m scripts.gpu.slim_wheels --out .whl-app                  # gradio & co. and diffusers, slimmed: 9 MiB
#   python -m scripts.gpu.pack_minilm --out .carry/minilm.tar.gz      # the prompt encoder, int8: 11 MiB
#   python -m scripts.gpu.travel_size .whl-app .carry                 # under 64 MiB?
# Run there:  OUT=$OUT bash scripts/gpu/app_speed.sh
set -u
PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu-out}
WHEELS=.whl-app MODULES="gradio diffusers"
source scripts/gpu/host_setup.sh
export GRADIO_ANALYTICS_ENABLED=False
timeout "${LIMIT:-400}" $PY -m bench.app_speed --device "${DEVICE:-cuda}" --repeats "${REPEATS:-10}" >"$OUT/app-speed.md" 2>"$OUT/app-speed.log"
echo "bench exit $?" | tee -a "$OUT/host.txt"
cat "$OUT/app-speed.md"
