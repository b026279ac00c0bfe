# Sourced by scripts/test and scripts/demo: bring .venv to exactly what uv.lock says.
#
# `uv sync --locked` makes the environment from uv.lock (the versions that were tested, every
# extra: the dev tools and the demo's clients) and refuses a lock that no longer matches
# pyproject.toml instead of quietly re-resolving it (scripts/lock updates the lock). The first run
# downloads; later runs re-check in well under a second and change only what the lock changed.
# FAILOVER_VENV moves the environment (.ci/run makes a fresh one in a temporary folder each run).
source "$(dirname "${BASH_SOURCE[0]}")/_uv.sh"
VENV="${FAILOVER_VENV:-$ROOT/.venv}"
UV_PROJECT_ENVIRONMENT="$VENV" "$UV" sync --quiet --locked --all-extras --python "$PY" --project "$ROOT" >&2 \
  || { echo "could not make $VENV from uv.lock (see above; scripts/lock updates the lock)" >&2; exit 1; }
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
