#!/usr/bin/env bash
# Set up everything vla-torchrl needs on a fresh Linux machine; a second run skips finished steps.
#   1. .venv in the repository with the package installed in editable mode (+ dev tools)
#   2. a Vulkan driver for ManiSkill's renderer: Mesa's lavapipe (>= 24.3) when there is no GPU
# Called by `make setup`, `make demo` and `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# --- 1. Python environment -------------------------------------------------------------------
PYTHON=""
for candidate in python3.11 python3.12 python3; do
  if command -v "$candidate" >/dev/null 2>&1 &&
     "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
    PYTHON="$candidate"; break
  fi
done
[ -n "$PYTHON" ] || die "Python >= 3.11 not found. Install python3.11 (with venv) and run again."

if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv || die "could not create .venv (on Debian: apt-get install python3-venv)"
fi

stamp=.venv/.vla_torchrl-installed
want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing vla-torchrl and its dependencies into .venv (a few minutes the first time)"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e '.[dev]' ||
    die "pip install failed (see above). The package registry must be reachable."
  echo "$want" > "$stamp"
else
  say ".venv is up to date"
fi

# --- 2. Vulkan for ManiSkill rendering --------------------------------------------------------
mesa_ok() {
  local v
  v=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null) || return 1
  dpkg --compare-versions "$v" ge 24.3 && [ -f /usr/share/vulkan/icd.d/lvp_icd.json ]
}
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  say "NVIDIA GPU found: ManiSkill renders on it"
elif mesa_ok; then
  say "software Vulkan (Mesa lavapipe $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers)) is installed"
else
  say "no GPU and no Mesa lavapipe >= 24.3: installing Mesa's software Vulkan driver"
  command -v apt-get >/dev/null 2>&1 ||
    die "apt-get not found. Install Mesa >= 24.3 (mesa-vulkan-drivers, libvulkan1) yourself, then run again."
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null ||
      die "installing mesa-vulkan-drivers needs root. Run 'sudo make setup' once, or install Mesa >= 24.3 yourself."
    SUDO="sudo -n"
  fi
  codename=$(. /etc/os-release 2>/dev/null; echo "${VERSION_CODENAME:-}")
  target=()
  if [ "$codename" = bookworm ]; then
    # Debian 12 ships Mesa 22.3, which lacks VK_KHR_external_semaphore_fd; backports has 25.x.
    list=/etc/apt/sources.list.d/bookworm-backports.list
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
      say "adding bookworm-backports to $list"
      echo 'deb http://deb.debian.org/debian bookworm-backports main' | $SUDO tee "$list" >/dev/null
    fi
    target=(-t bookworm-backports)
  fi
  $SUDO apt-get update -qq || die "apt-get update failed (is a package mirror reachable?)"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${target[@]}" mesa-vulkan-drivers libvulkan1 \
    >/dev/null || die "apt-get install mesa-vulkan-drivers failed (see above)"
  mesa_ok || die "Mesa lavapipe >= 24.3 is still missing after the install; ManiSkill cannot render on the CPU."
  say "installed Mesa lavapipe $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers)"
fi
say "done (vla_torchrl points VK_ICD_FILENAMES at lavapipe itself when no GPU driver is present)"
