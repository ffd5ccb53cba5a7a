#!/usr/bin/env bash
# Every current measurement, in one run on an otherwise idle machine (about 45 minutes on a 2-core CPU).
# Each table lands in bench/results/; the README and docs/ quote them. The experiments that answered a
# question (bench/experiments/) are rerun one by one, with the commands docs/shapes-world.md names.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
R=bench/results
run() { local out=$1; shift; echo "== $* -> $R/$out" >&2; "$@" 2>/dev/null | tee "$R/$out"; }

run quality-diffusion.md $PY -m train evaluate --model shapes --per-category 100
run quality-diffusion-no-layout.md $PY -m train evaluate --model shapes --per-category 100 --layout off
run lora-demo.log $PY -m bench.lora_demo --steps 400 --out runs/lora-star --per-category 200 --star-seeds 20 --results $R/lora-demo.md
run diffusion-latency.md $PY -m bench.diffusion_latency
run edit-quality.md $PY -m bench.edit_quality --n 100 --strength 0.6 --inpaint whole zoom base-whole base-zoom base-zoom-repaint3 --cases clear old
run generators.md $PY -m bench.generators --per-category 50
run app-speed.md $PY -m bench.app_speed
run app-speed-gan.md $PY -m bench.app_speed --generator gan
run quality-diffusion-fp32.md $PY -m train evaluate --model shapes --per-category 50 --split combos --precision fp32
run encoders.md $PY -m bench.encoders
echo "== prompt understanding, style-only restyling, faithful expansion" >&2
$PY -m bench.free_phrasing --per-category 100 --out $R/free-phrasing.md >/dev/null 2>&1
$PY -m bench.style_only --n 100 --out $R/style-only.md >/dev/null 2>&1
$PY -m bench.expansion --n 120 --out $R/expansion.md >/dev/null 2>&1
run share-link.log $PY -m bench.share_link --out $R/share-link.md
