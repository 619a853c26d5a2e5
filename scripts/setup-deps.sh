#!/usr/bin/env bash
# Installs what building and testing umamba needs on Debian 12, and nothing when it is all there:
#   - Debian packages (compilers, CMake/Ninja, libtiff, oneTBB, nifticlib, OpenCV imgcodecs, Boost,
#     CLI11, spdlog, nlohmann-json, GoogleTest, clang for the fuzz targets);
#   - a project-local Python environment .venv/ with the torch==2.11.0 wheel (LibTorch for C++) and
#     the independent readers the tests compare against (scripts/requirements.txt).
# Idempotent: a stamp in .venv records the requirements it was built from; a second run takes a
# second or two. Run as root or with sudo available.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake ninja-build pkg-config git ccache python3-venv
  libtiff-dev libtbb-dev libniftiio-dev libnifti2-dev zlib1g-dev libzstd-dev
  libopencv-imgcodecs-dev libboost-graph-dev libcli11-dev libspdlog-dev libfmt-dev
  nlohmann-json3-dev libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-14-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

stamp=.venv/.umamba-requirements
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && cmp -s scripts/requirements.txt "$stamp"; then
  exit 0
fi
python=python3
command -v "$python" >/dev/null || python=/usr/bin/python3
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$python" -m venv .venv
fi
echo "setup: installing scripts/requirements.txt into .venv (LibTorch comes with torch, about 4 GB once)"
.venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements.txt
cp scripts/requirements.txt "$stamp"
