# Sourced by scripts/_venv.sh and scripts/lock: install uv, the tool that reads uv.lock, once.
#
# Needs only bash and Python 3.11+: uv's version and the hashes of its files are pinned in
# scripts/uv-requirements.txt and installed with pip into .uv/ (FAILOVER_UV_HOME moves it). Sets
# UV to the binary. uv reads no user or system config here and never downloads a Python of its own.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
UV_HOME="${FAILOVER_UV_HOME:-$ROOT/.uv}"
PY="${PYTHON:-python3}"
uv_stamp="$UV_HOME/.installed-$(sha1sum "$ROOT/scripts/uv-requirements.txt" | cut -c1-12)"
if [ ! -f "$uv_stamp" ]; then
  echo "installing uv into $UV_HOME (first run only)..." >&2
  rm -rf "$UV_HOME"
  "$PY" -m venv "$UV_HOME"
  PIP_CONFIG_FILE=/dev/null "$UV_HOME/bin/python" -m pip install -q --disable-pip-version-check --require-hashes \
    --requirement "$ROOT/scripts/uv-requirements.txt" >&2
  touch "$uv_stamp"
fi
UV="$UV_HOME/bin/uv"
export UV_NO_CONFIG=1 UV_PYTHON_DOWNLOADS=never
