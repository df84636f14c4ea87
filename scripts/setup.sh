#!/usr/bin/env bash
# Everything a fresh Debian 12 machine needs to run medrobot_llm and its tests, idempotent: system
# packages (espeak-ng for voice tests, tmux for terminal tests, sox; flite and festival with three English
# voices for benchmarks/voice_bench.py; chromium and chromium-driver for the web console's browser tests), the
# Python package with its test extras, and ROS 2 (a sourced distribution, or the PyPI wheels) with the colcon
# build of ros_ws.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
log() { echo "[setup] $*"; }

missing=()
for pkg in espeak-ng tmux sox flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts \
           chromium chromium-driver; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    log "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    log "missing system packages: ${missing[*]} (run: sudo apt-get install ${missing[*]}); voice/tmux tests need them"
  fi
fi

stamp=.setup-stamp
# every extra (the quick start installs everything); ray too: the suite runs `medrobot bench --engine ray`
extras='.[all,test,ray]'
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $extras"
# the installed package must be this checkout (an editable install made from another clone shadows it)
# (-I keeps the current directory off sys.path, so the check sees what the console script sees)
here_ok() {
  "$PY" -I - "$PWD" <<'PYEOF' 2>/dev/null
import pathlib, sys
import medrobot_llm
here = pathlib.Path(sys.argv[1], "medrobot_llm").resolve()
sys.exit(0 if pathlib.Path(medrobot_llm.__file__).resolve().parent == here else 1)
PYEOF
}
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! here_ok; then
  log "pip install -e $extras"
  "$PY" -m pip install -q --disable-pip-version-check -e "$extras"
  echo "$want" > "$stamp"
else
  log "python package up to date"
fi

if [ -f scripts/install_ros.sh ]; then
  bash scripts/install_ros.sh
fi
log "done"
