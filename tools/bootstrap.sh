#!/usr/bin/env bash
# Make everything the demo and the tests need, from the repository's own files:
# a Python 3.12 virtual environment at .venv with the locked dependencies, and the
# Neo4j launcher built with Maven. Safe to run again: it redoes only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
  for candidate in "${PYTHON:-}" python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3.12 \
                   /usr/bin/python3.12 /usr/local/bin/python3.12; do
    if [ -n "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' \
        >/dev/null 2>&1; then
      command -v "$candidate" || echo "$candidate"
      return
    fi
  done
  echo "bootstrap: Python 3.12 is required; install it (e.g. pyenv install 3.12) or set PYTHON" >&2
  exit 1
}

stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ requirements.lock -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ] \
   || [ tools/bootstrap.sh -nt "$stamp" ]; then
  python=$(find_python)
  echo "bootstrap: creating .venv with $python"
  "$python" -m venv .venv
  .venv/bin/python -m pip install --quiet uv==0.13.8
  # Compiled bytecode up front: every Snakemake job is a fresh interpreter importing torch
  # and transformers, and where PYTHONDONTWRITEBYTECODE is set each would compile them anew.
  .venv/bin/uv pip sync --quiet --compile-bytecode --python .venv/bin/python requirements.lock
  .venv/bin/uv pip install --quiet --python .venv/bin/python --no-deps --editable .
  touch "$stamp"
fi

for tool in java mvn; do
  command -v "$tool" >/dev/null || { echo "bootstrap: $tool is required for the local Neo4j (Java 17 + Maven)" >&2; exit 1; }
done
.venv/bin/python -c 'from protembed.testing.local_neo4j import build_launcher; build_launcher()'
