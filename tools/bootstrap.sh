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

# A PyEED user's environment: neomodel 7 (which makes PyEED's schema in the tests, and needs
# neo4j 6.1.x), PyEED's own dependencies and ours, locked together; protembed is installed
# into it from this checkout with dependency resolution, which finds everything already
# there (tests/test_pyeed_env.py checks that it added nothing but protembed).
pyeed_stamp=.venv-pyeed/.installed
if [ ! -f "$pyeed_stamp" ] || [ tests/support/pyeed/requirements.lock -nt "$pyeed_stamp" ] \
   || [ pyproject.toml -nt "$pyeed_stamp" ] || [ tools/bootstrap.sh -nt "$pyeed_stamp" ]; then
  "$(find_python)" -m venv --clear --without-pip .venv-pyeed
  .venv/bin/uv pip sync --quiet --compile-bytecode --python .venv-pyeed/bin/python \
    tests/support/pyeed/requirements.lock
  .venv/bin/uv pip install --quiet --python .venv-pyeed/bin/python --editable .
  touch "$pyeed_stamp"
fi

# The local Neo4j servers: 5.26 LTS (Java 17 or 21) and 2026.08 (Java 21+), built into the
# user's cache (~/.cache/protembed, or PROTEMBED_CACHE); a missing JDK is named by the build.
command -v mvn >/dev/null || { echo "bootstrap: mvn (Maven) is required for the local Neo4j" >&2; exit 1; }
.venv/bin/python -c "from protembed.demo.local_neo4j import VERSIONS, build_launcher; [build_launcher(v) for v in VERSIONS]"

# The report's test opens the real report in headless Chromium (Debian's package).
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing chromium for the report's browser test"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "bootstrap: the report's browser test needs Chromium (Debian: apt-get install chromium)" >&2
  fi
fi
