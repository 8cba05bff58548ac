#!/usr/bin/env bash
# The project's test command: install, bring the real local stack up, lint, run every test.
# A stack that was already running is left running; one started here is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export SPARK_LOCAL_IP=127.0.0.1

# exit code 4: nothing of the stack runs, so this run owns it and stops it at the end
was_running=1
.venv/bin/fink-stack status >/dev/null 2>&1 || [ $? != 4 ] || was_running=0
stop_stack() { [ "$was_running" = 1 ] || .venv/bin/fink-stack down; }
trap stop_stack EXIT
# a stack this run owns may be taken down and up again by the test that checks `down`
# leaves the host as `up` found it (tests/stack/test_host_restore.py)
[ "$was_running" = 1 ] || export FINK_STACK_FULL_CYCLE=1

.venv/bin/fink-stack up
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# An -m of the caller's own chooses the tests: then one run, serial, as plain pytest's.
for arg in "$@"; do
  case "$arg" in
    -m | -m?* | --markexpr*)
      .venv/bin/pytest --durations=30 "$@"
      exit 0
      ;;
  esac
done
# Else first the tests that share the stack peacefully, two at a time (pytest-xdist: a
# test file stays on one worker; the files using the real node take turns, see
# tests/conftest.py), then, alone, those that stop or restart a server every test shares
# (marked `exclusive`). Each part ends with its 30 slowest tests: where CI time goes.
# Exit code 5 is a part the arguments selected nothing from.
failed=0
part() {
  local code=0
  .venv/bin/pytest --durations=30 "$@" || code=$?
  [ "$code" = 0 ] || [ "$code" = 5 ] || failed=1
}
part -n 2 --dist loadgroup -m "not exclusive" "$@"
part -m exclusive "$@"
exit "$failed"
