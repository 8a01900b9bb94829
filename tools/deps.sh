#!/bin/sh
# Installs what duet needs on a fresh Debian 12 machine (run as root, or with
# sudo available). Build: gcc, make, zlib, OpenMP (libgomp ships with gcc),
# stb (PNG/JPEG). Data: the KJV Bible, fortunes, Fashion-MNIST.
# PyTorch (python3-torch) is only needed to regenerate test fixtures and to run
# the benchmarks' baselines: pass --dev to install it too (with clang and
# libFuzzer for `make fuzz`).
set -e
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
PKGS="build-essential make zlib1g-dev libstb-dev locales bible-kjv bible-kjv-text fortunes fortunes-min dataset-fashion-mnist"
[ "${1:-}" = "--dev" ] && PKGS="$PKGS python3-torch python3-numpy python3-jinja2 libopenblas-dev clang libclang-rt-14-dev libomp-14-dev"
missing=""
for p in $PKGS; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "installing:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
