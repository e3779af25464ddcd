#!/usr/bin/env bash
# Create .venv with Python >= 3.12 and install ppl-bnn (editable) with its test and docs tools.
# Usage: bash scripts/install.sh        (PYTHON=/path/to/python3.12 to choose the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
  local candidates=("${PYTHON:-}" python3.12 python3.13 python3 /root/.pyenv/versions/3.12*/bin/python3 \
                    "$HOME"/.pyenv/versions/3.12*/bin/python3 /usr/bin/python3.12 /usr/local/bin/python3.12)
  for c in "${candidates[@]}"; do
    [ -n "$c" ] || continue
    if "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
      echo "$c"; return 0
    fi
  done
  echo "install.sh: error: no Python >= 3.12 found (set PYTHON=/path/to/python3.12)" >&2
  return 1
}

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)'; then
  py=$(find_python)
  rm -rf .venv
  "$py" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test,docs]"
echo "installed: $(.venv/bin/python -c 'import ppl_bnn, jax, numpyro, blackjax; print("ppl_bnn", "jax", jax.__version__, "numpyro", numpyro.__version__, "blackjax", blackjax.__version__)')"
