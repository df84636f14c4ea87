#!/usr/bin/env bash
# The README's test command: lint and type checks, then the whole suite with ROS 2 on the path.
# No test collected is a failure.
#
# Two phases keep the suite well under 20 min on 2 cores without making timing tests flaky: first every test
# that needs no quiet machine (planner, voice decoding, sims, web over HTTP) on both cores (pytest-xdist, a
# file's tests kept on one worker so its module fixtures start once); then the tests that judge real processes
# against their own clocks (ROS graphs with heartbeat watchdogs, the terminal, the browser) one at a time with
# the machine to themselves. With arguments, plain pytest with those arguments.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -f ros_ws/install/medrobot_env.sh ]; then
  # shellcheck disable=SC1091
  source ros_ws/install/medrobot_env.sh
fi
QUIET='ros or tmux or browser'

pytest_phase() {
  python3 -m pytest -q --durations=15 "$@"
  local rc=$?
  if [ "$rc" = 5 ]; then
    echo "[test] pytest collected no tests ($*): failing" >&2
    return 1
  fi
  return "$rc"
}

if [ "$#" != 0 ]; then
  pytest_phase "$@"
  exit $?
fi
# static checks first (configured in pyproject.toml): a type or lint error fails the run like a test
python3 -m ruff check medrobot_llm tests scripts benchmarks || exit 1
python3 -m mypy medrobot_llm || exit 1
start=$(date +%s)
echo "[test] phase 1 of 2: tests that need no quiet machine, on 2 workers" >&2
pytest_phase -n 2 --dist loadfile -m "not ($QUIET)"
rc1=$?
echo "[test] phase 2 of 2: ROS graphs, the terminal and the browser, one at a time" >&2
pytest_phase -m "$QUIET"
rc2=$?
echo "[test] both phases: $(( $(date +%s) - start )) s (phase 1 exit $rc1, phase 2 exit $rc2)" >&2
[ "$rc1" = 0 ] && [ "$rc2" = 0 ]
