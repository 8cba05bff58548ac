#!/usr/bin/env bash
# The main job: install, build and start the real local stack, then show the whole broker at work:
# the operator reconciling a BrokerPipeline, alerts streamed through the Spark enrichment core,
# and what reached each sink (scripts/demo.py; arguments pass through, e.g. --alerts 500).
# The stack keeps running afterwards; stop it with `.venv/bin/fink-stack down`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export SPARK_LOCAL_IP=127.0.0.1
.venv/bin/fink-stack up
exec .venv/bin/python scripts/demo.py "$@"
