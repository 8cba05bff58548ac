#!/usr/bin/env bash
# Create .venv with the project and its dev tools; redone whenever pyproject.toml changes.
# Checks first for the toolchains the local stack is built with, and says what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=0
need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "bootstrap: '$1' not found: $2" >&2
    missing=1
  fi
}
need go "Go >= 1.26 compiles kube-apiserver, the controllers, kubectl and etcd"
need java "Java 17 runs Kafka, HBase and Spark"
need mvn "Maven fetches the Kafka, HBase and Spark connector jars from Maven Central"
PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PYTHON=$candidate
      break
    fi
  done
fi
[ -n "$PYTHON" ] || { echo "bootstrap: Python 3.11 not found (set PYTHON=...)" >&2; missing=1; }
[ "$missing" = 0 ] || exit 1

stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "bootstrap: installing the project into .venv (first run downloads pyspark, ~450 MB)"
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet -e '.[dev]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
