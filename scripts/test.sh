#!/usr/bin/env bash
# The README's test command: lint and type checks, then the whole suite with ROS 2 on the path.
# No test collected is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -f ros_ws/install/medrobot_env.sh ]; then
  # shellcheck disable=SC1091
  source ros_ws/install/medrobot_env.sh
fi
# the 30 slowest tests are listed at the end: the suite is to stay well under 20 min on 2 cores
# static checks first (configured in pyproject.toml): a type or lint error fails the run like a test
if [ "$#" = 0 ]; then
  python3 -m ruff check medrobot_llm tests scripts benchmarks || exit 1
  python3 -m mypy medrobot_llm || exit 1
fi
python3 -m pytest -q --durations=30 "$@"
rc=$?
if [ "$rc" = 5 ]; then
  echo "[test] pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
