#!/usr/bin/env bash
# Provide ROS 2 for medrobot_llm and build ros_ws. Idempotent: a second run only checks and takes seconds.
#
#  1. ROS 2 itself: a ROS 2 distribution installed from its own packages (already sourced, or under
#     /opt/ros/<distro>/setup.bash) is used as it is; otherwise the ROS 2 Kilted wheels from PyPI are
#     pip-installed into $PYTHON (default: python3), and their CMake export files are pointed at the local
#     Python and numpy include dirs (they name the wheel builder's /opt/python/cp3XX-cp3XX/...).
#  2. `colcon build` of ros_ws/src (skipped when nothing under ros_ws/src changed since the last build).
#  3. ros_ws/install/medrobot_env.sh (for shells: `source` it) and ros_ws/install/medrobot_env.json
#     (a flat {"VAR": "value"} object for Python code that spawns ROS processes), then a quick check that
#     rclpy and medrobot_interfaces import in a fresh process that got only that environment.
#
# Knobs: PYTHON=/path/to/python3   MEDROBOT_ROS=auto|wheels|system   MEDROBOT_ROS_FORCE_BUILD=1
set -euo pipefail

log() { echo "[install_ros] $*"; }
die() {
  echo "[install_ros] ERROR: $*" >&2
  exit 1
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WS="$ROOT/ros_ws"
PY=${PYTHON:-python3}
MODE_WANTED=${MEDROBOT_ROS:-auto}
T0=$SECONDS

# Versions that were installed and tested together (ROS 2 Kilted, Python 3.10-3.12 wheels).
ROS_PIP_PKGS=(
  ros-kilted-rclpy==9.1.2
  ros-kilted-rmw-fastrtps-cpp==9.3.3
  ros-kilted-std-msgs==5.5.1
  ros-kilted-action-msgs==2.3.0
  ros-kilted-rosidl-default-generators==1.7.1
  ros-ament-cmake==2.7.3
  ros-ament-package==0.17.2
  ros-ament-cmake-ros-core==0.14.5
  ros-ament-cmake-include-directories==2.7.3
  ros-rosidl-core-generators==0.3.1
  colcon-common-extensions==0.3.0
)

case "$MODE_WANTED" in auto | wheels | system) ;; *) die "MEDROBOT_ROS must be auto, wheels or system (got '$MODE_WANTED')" ;; esac
command -v "$PY" >/dev/null 2>&1 || die "python '$PY' not found; set PYTHON=/path/to/python3"
# The real interpreter (not a pyenv shim). _ROS_WHEELS_BOOTSTRAP_COMPLETE skips the wheels' re-exec hook.
PYEXE=$(_ROS_WHEELS_BOOTSTRAP_COMPLETE=1 "$PY" -c 'import sys; print(sys.executable)') ||
  die "cannot run '$PY'"
pyq() { _ROS_WHEELS_BOOTSTRAP_COMPLETE=1 "$PYEXE" "$@"; }

mkdir -p "$WS/src" "$WS/build" "$WS/install"
exec 9>"$WS/build/.install_ros.lock"
if command -v flock >/dev/null 2>&1; then
  flock -w 1200 9 || die "another install_ros.sh has held $WS/build/.install_ros.lock for 20 minutes"
fi

# A caller that sourced an earlier env file: drop this workspace's own entries, so that the build never
# sees a stale install and the env files come out the same either way.
strip_ws() {
  local v=${!1:-} out="" p parts=()
  IFS=: read -ra parts <<<"$v"
  for p in "${parts[@]}"; do
    case "$p" in "" | "$WS/install" | "$WS/install/"* | "$WS/build/"*) ;; *) out=${out:+$out:}$p ;; esac
  done
  if [ -n "$out" ]; then export "$1=$out"; else unset "$1"; fi
}
for var in AMENT_PREFIX_PATH CMAKE_PREFIX_PATH COLCON_PREFIX_PATH LD_LIBRARY_PATH PYTHONPATH PKG_CONFIG_PATH PATH; do
  strip_ws "$var"
done

# Snapshot of the caller's environment: the env file records what this script adds to it.
# (kept in a private temp dir, removed on exit: the caller's environment may hold secrets)
TMPD=$(mktemp -d)
trap 'rm -rf "$TMPD"' EXIT
chmod 700 "$TMPD"
BASE_ENV_FILE="$TMPD/base_env.json"
pyq -c 'import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], "w"))' "$BASE_ENV_FILE"

# --- build tools ----------------------------------------------------------------------------------
need_apt=()
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
command -v make >/dev/null 2>&1 || need_apt+=(make)
if ((${#need_apt[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "apt-get install ${need_apt[*]} (needed by colcon build)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    die "missing build tools: ${need_apt[*]} (run: sudo apt-get install cmake g++ make)"
  fi
fi

# --- 1. ROS 2 -------------------------------------------------------------------------------------
find_system_setup() {
  # Prints the setup.bash to source ('' when the distribution is already sourced); fails if none.
  if [ -n "${ROS_DISTRO:-}" ] && [ "${MEDROBOT_ROS_MODE:-}" != wheels ]; then
    if [ -f "/opt/ros/$ROS_DISTRO/setup.bash" ]; then
      echo "/opt/ros/$ROS_DISTRO/setup.bash"
      return 0
    fi
    if command -v ros2 >/dev/null 2>&1; then
      echo ""
      return 0
    fi
  fi
  local f last=""
  for f in /opt/ros/*/setup.bash; do [ -f "$f" ] && last=$f; done
  [ -n "$last" ] || return 1
  echo "$last"
}

MODE=wheels
SYSTEM_SETUP=""
if [ "$MODE_WANTED" != wheels ] && SYSTEM_SETUP=$(find_system_setup); then
  MODE=system
elif [ "$MODE_WANTED" = system ]; then
  die "MEDROBOT_ROS=system but no ROS 2 distribution found (no /opt/ros/*/setup.bash, no sourced ROS_DISTRO with ros2 on PATH)"
fi

if [ "$MODE" = system ]; then
  if [ -n "$SYSTEM_SETUP" ]; then
    log "using the installed ROS 2 distribution: source $SYSTEM_SETUP"
    set +u
    # shellcheck disable=SC1090
    source "$SYSTEM_SETUP"
    set -u
  else
    log "using the already-sourced ROS 2 distribution '$ROS_DISTRO'"
  fi
  pyq -c 'import rclpy' 2>/dev/null || die "ROS 2 '${ROS_DISTRO:-?}' is installed but '$PYEXE' cannot import rclpy with it; \
run with PYTHON=<the python3 that distribution was built for> (often /usr/bin/python3), or MEDROBOT_ROS=wheels to use the PyPI wheels instead"
  export MEDROBOT_ROS_MODE=system
  [ -n "${RMW_IMPLEMENTATION:-}" ] || log "RMW_IMPLEMENTATION not set: the distribution's default middleware is used"
else
  # Already installed at the pinned versions? (one metadata query, no network)
  missing=$(pyq -c '
import sys, importlib.metadata as md
bad = []
for spec in sys.argv[1:]:
    name, ver = spec.split("==")
    try:
        if md.version(name) != ver:
            bad.append(spec)
    except md.PackageNotFoundError:
        bad.append(spec)
print(" ".join(bad))' "${ROS_PIP_PKGS[@]}")
  if pyq -c 'import numpy' 2>/dev/null; then :; else missing="$missing numpy"; fi
  if [ -n "${missing// /}" ]; then
    log "pip install ROS 2 Kilted wheels into $PYEXE (missing or other version: $missing)"
    log "this downloads ~100 packages and takes about a minute"
    PIP_LOG="$WS/build/install_ros_pip.log"
    if ! timeout 1800 "$PYEXE" -m pip install --disable-pip-version-check --root-user-action=ignore \
      "${ROS_PIP_PKGS[@]}" numpy >"$PIP_LOG" 2>&1; then
      grep -v "is ignored: it is neither a file nor a directory" "$PIP_LOG" | tail -n 30 >&2
      die "pip install of the ROS 2 Kilted wheels failed, log: $PIP_LOG (needs PyPI and CPython 3.10-3.12 on x86_64 \
Linux); or install ROS 2 from its own packages and re-run (used when /opt/ros/<distro>/setup.bash exists)"
    fi
    log "pip install done ($(grep -c '' "$PIP_LOG") log lines: $PIP_LOG)"
  else
    log "ROS 2 Kilted wheels already installed in $PYEXE"
  fi
  export MEDROBOT_ROS_MODE=wheels
fi

# Where the wheels put their ROS prefix (lib/, share/, include/): the interpreter's data dir.
ROS_PREFIX=$(pyq -c 'import sysconfig; print(sysconfig.get_paths()["data"])')
PYINC=$(pyq -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
[ -f "$PYINC/Python.h" ] || die "Python headers not found at $PYINC (Debian: apt-get install python3-dev; pyenv builds have them)"
NPINC=$(pyq -c 'import numpy; print(numpy.get_include())') ||
  die "numpy is not importable by $PYEXE (run: $PYEXE -m pip install numpy)"

if [ "$MODE" = wheels ]; then
  # Fix-up: the wheels' CMake export files name the build machine's Python (/opt/python/cp3XX-cp3XX/...).
  # Rewrite those paths, and paths written by an earlier run if numpy/python moved since, to the local ones.
  pyq - "$ROS_PREFIX/share" "$PYINC" "$NPINC" <<'PYEOF'
import os, re, sys
share, pyinc, npinc = sys.argv[1:4]
stamp = os.path.join(share, ".medrobot_cmake_python_paths")
old = []
if os.path.exists(stamp):
    old = [l for l in open(stamp).read().splitlines() if l]
subs = [
    (re.compile(r"/opt/python/cp\d+-cp\d+t?/lib/python3\.\d+t?/site-packages/numpy/(?:_core|core)/include"), npinc),
    (re.compile(r"/opt/python/cp\d+-cp\d+t?/include/python3\.\d+t?"), pyinc),
]
if len(old) == 2 and old != [pyinc, npinc]:
    subs += [(re.compile(re.escape(old[1])), npinc), (re.compile(re.escape(old[0])), pyinc)]
changed = 0
for pkg in sorted(os.listdir(share)):
    d = os.path.join(share, pkg, "cmake")
    if not os.path.isdir(d):
        continue
    for f in sorted(os.listdir(d)):
        if not f.endswith(".cmake"):
            continue
        p = os.path.join(d, f)
        text = open(p, encoding="utf-8", errors="surrogateescape").read()
        if "/opt/python/" not in text and not (len(subs) > 2 and (old[0] in text or old[1] in text)):
            continue
        new = text
        for rx, rep in subs:
            new = rx.sub(lambda m: rep, new)
        if new != text:
            open(p, "w", encoding="utf-8", errors="surrogateescape").write(new)
            changed += 1
with open(stamp, "w") as fh:
    fh.write(pyinc + "\n" + npinc + "\n")
print(f"[install_ros] CMake export files: {changed} rewritten to {pyinc} and {npinc}" if changed
      else "[install_ros] CMake export files already point at the local Python and numpy")
PYEOF

  # The environment the wheels need (what their ros_wheels_bootstrapper .pth would set by re-exec'ing
  # every Python process, made explicit so that a process started with it never re-execs).
  WHEEL_LIBS=$(pyq -c '
import glob, os, sys, sysconfig
sp = sysconfig.get_paths()["purelib"]
print(":".join([os.path.join(sys.argv[1], "lib")] + sorted(p for p in glob.glob(os.path.join(sp, "ros_*.libs")) if os.path.isdir(p))))' "$ROS_PREFIX")
  export LD_LIBRARY_PATH="$WHEEL_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export AMENT_PREFIX_PATH="$ROS_PREFIX${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
  export CMAKE_PREFIX_PATH="$ROS_PREFIX${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1
  export RMW_IMPLEMENTATION=${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}
  export ROS_DISTRO=kilted ROS_VERSION=2 ROS_PYTHON_VERSION=3
fi
# The interpreter that has rclpy comes first on PATH, so `python3` in that environment is it.
PATH="$(dirname "$PYEXE"):$PATH"
export PATH
export MEDROBOT_ROS_PYTHON="$PYEXE" MEDROBOT_ROS_WS="$WS"
# DDS discovery stays on this machine unless the caller chose otherwise.
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}

# --- 2. colcon build --------------------------------------------------------------------------------
if pyq -c 'import colcon_core' 2>/dev/null; then
  COLCON=("$PYEXE" -m colcon)
elif command -v colcon >/dev/null 2>&1; then
  COLCON=(colcon)
else
  log "pip install colcon-common-extensions into $PYEXE"
  timeout 900 "$PYEXE" -m pip install -q --disable-pip-version-check --root-user-action=ignore \
    colcon-common-extensions 2>&1 | grep -v "is ignored: it is neither a file nor a directory" >&2 ||
    true
  pyq -c 'import colcon_core' 2>/dev/null ||
    die "colcon is missing and pip could not install it (run: $PYEXE -m pip install colcon-common-extensions)"
  COLCON=("$PYEXE" -m colcon)
fi

BUILD_STAMP="$WS/install/.medrobot_build_stamp"
src_hash=$(
  cd "$WS"
  {
    echo "$MODE $PYEXE $ROS_PREFIX ${ROS_DISTRO:-} $PYINC $NPINC"
    find src -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*/.*' -print0 | sort -z |
      xargs -0 -r sha256sum
  } | sha256sum | cut -d' ' -f1
)
if [ "${MEDROBOT_ROS_FORCE_BUILD:-0}" != 1 ] && [ -f "$BUILD_STAMP" ] && [ "$(cat "$BUILD_STAMP")" = "$src_hash" ] &&
  [ -f "$WS/install/local_setup.bash" ]; then
  log "ros_ws up to date (nothing under ros_ws/src changed since the last build)"
else
  pkgs=$( (cd "$WS" && "${COLCON[@]}" list --base-paths src --names-only 2>/dev/null) | tr '\n' ' ')  || pkgs=''
  log "colcon build of ros_ws: ${pkgs:-no packages}"
  BUILD_LOG="$WS/build/install_ros_colcon.log"
  bstart=$SECONDS
  if ! (cd "$WS" && timeout 1800 "${COLCON[@]}" build --base-paths src \
    --event-handlers console_direct+ desktop_notification- \
    --cmake-args -DBUILD_TESTING=OFF "-DPython3_EXECUTABLE=$PYEXE") \
    >"$BUILD_LOG" 2>&1; then
    tail -n 60 "$BUILD_LOG" >&2
    die "colcon build failed; full log: $BUILD_LOG"
  fi
  echo "$src_hash" >"$BUILD_STAMP"
  log "colcon build done in $((SECONDS - bstart)) s (log: $BUILD_LOG)"
fi

# --- 3. the environment files ---------------------------------------------------------------------
ENV_SH="$WS/install/medrobot_env.sh"
ENV_JSON="$WS/install/medrobot_env.json"
FINAL_ENV_FILE="$TMPD/final_env.json"
(
  set +u
  # shellcheck disable=SC1091
  if [ -f "$WS/install/local_setup.bash" ]; then source "$WS/install/local_setup.bash"; fi
  set -u
  pyq -c 'import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], "w"))' "$FINAL_ENV_FILE"
)
pyq - "$BASE_ENV_FILE" "$FINAL_ENV_FILE" "$ENV_SH" "$ENV_JSON" <<'PYEOF'
import json, os, shlex, sys
base, final = (json.load(open(p)) for p in sys.argv[1:3])
env_sh, env_json = sys.argv[3:5]
# Variables the ROS environment consists of; anything else the script or a setup file changed is kept too,
# except shell bookkeeping.
always = ["MEDROBOT_ROS_MODE", "MEDROBOT_ROS_PYTHON", "MEDROBOT_ROS_WS", "ROS_AUTOMATIC_DISCOVERY_RANGE",
          "AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH", "COLCON_PREFIX_PATH", "LD_LIBRARY_PATH", "PYTHONPATH",
          "PATH", "RMW_IMPLEMENTATION", "ROS_DISTRO", "ROS_VERSION", "ROS_PYTHON_VERSION",
          "_ROS_WHEELS_BOOTSTRAP_COMPLETE"]
skip = {"PWD", "OLDPWD", "SHLVL", "_", "BASH_EXECUTION_STRING", "COLCON_CURRENT_PREFIX",
        "AMENT_CURRENT_PREFIX", "_CATKIN_SETUP_DIR"}
keys = [k for k in always if k in final]
keys += sorted(k for k in final if k not in keys and k not in skip and final[k] != base.get(k)
               and not k.startswith("BASH_FUNC_"))
out = {k: final[k] for k in keys}

def dedup(value):
    seen, parts = set(), []
    for p in value.split(":"):
        if p and p not in seen:
            seen.add(p)
            parts.append(p)
    return ":".join(parts)

pathlike = {"PATH", "LD_LIBRARY_PATH", "PYTHONPATH", "AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH",
            "COLCON_PREFIX_PATH", "PKG_CONFIG_PATH"}
for k in pathlike & out.keys():
    out[k] = dedup(out[k])
tmp = env_json + ".tmp"
with open(tmp, "w") as fh:
    json.dump(out, fh, indent=2, sort_keys=True)
    fh.write("\n")
os.replace(tmp, env_json)

lines = ["# Generated by scripts/install_ros.sh: the ROS 2 environment of medrobot_llm",
         f"# (mode: {out.get('MEDROBOT_ROS_MODE')}). Source it from bash/sh:  . {env_sh}",
         "# Python code can load the same variables from medrobot_env.json beside this file.",
         "# LD_LIBRARY_PATH must be in the environment when a process starts: source this before"
         " starting python."]
for k, v in out.items():
    if k in pathlike:
        # the ROS value first, then whatever the sourcing shell already has
        lines.append(f'export {k}={shlex.quote(v)}"${{{k}:+:${k}}}"')
    else:
        lines.append(f"export {k}={shlex.quote(v)}")
tmp = env_sh + ".tmp"
with open(tmp, "w") as fh:
    fh.write("\n".join(lines) + "\n")
os.replace(tmp, env_sh)
PYEOF
log "wrote $ENV_SH and $ENV_JSON"

# Check: a fresh process that gets only that environment imports rclpy and the built interfaces.
check='import rclpy
from rclpy.action import ActionServer, ActionClient
import std_msgs.msg, action_msgs.msg'
if [ -d "$WS/install/medrobot_interfaces" ]; then
  check="$check
from medrobot_interfaces.action import ExecuteSkill
from medrobot_interfaces.srv import PlanCommand
from medrobot_interfaces.msg import SupervisorState
ExecuteSkill.Goal(skill=\"check\"); PlanCommand.Request(); SupervisorState()"
fi
# shellcheck disable=SC2016
if ! out=$(env -i HOME="${HOME:-/root}" PATH=/usr/local/bin:/usr/bin:/bin bash --noprofile --norc -c \
  '. "$1" && timeout 120 "$MEDROBOT_ROS_PYTHON" -c "$2"' _ "$ENV_SH" "$check" 2>&1); then
  echo "$out" | tail -n 30 >&2
  die "the built environment does not import rclpy/medrobot_interfaces; see the error above (env file: $ENV_SH)"
fi
log "ok: rclpy + medrobot_interfaces import with $ENV_SH (mode $MODE, ${ROS_DISTRO:-?}, $((SECONDS - T0)) s)"
