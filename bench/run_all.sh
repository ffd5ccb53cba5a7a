#!/usr/bin/env bash
# Every measurement in the README, in one run on an otherwise idle machine (about 45 minutes on the
# 2-core CPU). Each table lands in bench/results/; the README quotes them.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
R=bench/results
run() { local out=$1; shift; echo "== $* -> $R/$out" >&2; "$@" 2>/dev/null | tee "$R/$out"; }

run quality-diffusion.md $PY -m train evaluate --model shapes --per-category 100
run quality-diffusion-no-layout.md $PY -m train evaluate --model shapes --per-category 100 --layout off
run layout-variants.md $PY bench/layout_variants.py --per-category 100
echo "== bench/relations.py -> $R/relations-layout.md" >&2
$PY bench/relations.py --model assets/shapes-diffusion --out $R/relations-layout.md 2>/dev/null
run lora-demo.log $PY bench/lora_demo.py --steps 400 --out runs/lora-star --per-category 200 --star-seeds 20 --results $R/lora-demo.md
run diffusion-latency.md $PY bench/diffusion_latency.py
run edit-quality.md $PY bench/edit_quality.py --n 100 --strength 0.6 --inpaint whole zoom base-whole base-zoom base-zoom-repaint3 --cases clear old
run generators.md $PY bench/generators.py --per-category 50
run app-speed.md $PY bench/app_speed.py
run app-speed-gan.md $PY bench/app_speed.py --generator gan
run quality-diffusion-fp32.md $PY -m train evaluate --model shapes --per-category 50 --split combos --precision fp32
run encoders.md $PY bench/encoders.py
echo "== prompt understanding, style-only restyling, faithful expansion" >&2
$PY bench/free_phrasing.py --per-category 100 --out $R/free-phrasing.md >/dev/null 2>&1
$PY bench/style_only.py --n 100 --out $R/style-only.md >/dev/null 2>&1
$PY bench/expansion.py --n 120 --out $R/expansion.md >/dev/null 2>&1
