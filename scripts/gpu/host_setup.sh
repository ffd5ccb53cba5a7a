# Sourced by the GPU-host scripts (train_and_bench.sh, app_speed.sh): the GPU host's set-up they share.
# Needs PY, OUT, WHEELS (the carried folder of wheels the host's image lacks) and MODULES (the packages whose
# versions host.txt records beside torch's). Installs the wheels, unpacks MiniLM, records the host.
mkdir -p "$OUT"
if [[ -d $WHEELS ]]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl \
    && export PYTHONPATH=/tmp/site || exit 1
fi
$PY -m scripts.gpu.pack_minilm --unpack .carry/minilm.tar.gz --to /tmp/minilm && export WORDBRUSH_MINILM_DIR=/tmp/minilm || exit 1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee "$OUT/host.txt"
$PY -c "import importlib, sys; print(*(f'{m} {importlib.import_module(m).__version__}' for m in sys.argv[1:]))" \
  torch $MODULES | tee -a "$OUT/host.txt"
