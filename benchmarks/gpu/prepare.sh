#!/usr/bin/env bash
# Everything the GPU run needs that the GPU machine lacks, in parts of at most 64 MiB: the shared kit
# (../shared/gpu/prepare.sh: the web stack, MiniLM and WebNLG* in .gpu/p1; onnxruntime-gpu in .gpu/p2..p5),
# then, into .gpu/p1/extra, wrk with its LuaJIT (and libssl3 in case the machine has none) as Debian packages,
# and pytest's wheels for the GPU tests. Run from the project's root on the CPU machine:
#   bash benchmarks/gpu/prepare.sh
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
bash ../shared/gpu/prepare.sh
extra=.gpu/p1/extra
mkdir -p "$extra/debs" "$extra/wheels"
(cd "$extra/debs" && apt-get download -q wrk libluajit2-5.1-2 libssl3 2> /dev/null)
python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp --platform any \
  --platform manylinux2014_x86_64 -d "$extra/wheels" "pytest>=8" "pluggy>=1.5" "iniconfig>=2" "packaging>=24"
du -sh .gpu/p1 "$extra"
