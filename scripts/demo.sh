#!/usr/bin/env bash
# The main job: install, build and start the real local stack, then show every server at work.
# The stack keeps running afterwards; stop it with `.venv/bin/fink-stack down`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export SPARK_LOCAL_IP=127.0.0.1
.venv/bin/fink-stack up
.venv/bin/fink-stack status
.venv/bin/fink-stack smoke
echo
echo "The stack is running. Point a shell at it with:  eval \"\$(.venv/bin/fink-stack env)\""
echo "Stop it with:  .venv/bin/fink-stack down   (add --wipe to delete its data)"
