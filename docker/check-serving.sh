#!/usr/bin/env bash
# Serve an export from a fresh virtual environment holding only the serving dependencies and the
# package installed as the images install it (with onnxruntime for CPU), started with the entrypoint's
# exact command from outside the checkout, and check that it answers.
#     bash docker/check-serving.sh [EXPORT]
# EXPORT: a demo export to serve; without it, a small one is built first with the development environment (.venv).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'if [ -n "${server:-}" ]; then kill "$server" 2>/dev/null || true; fi; rm -rf "$work"' EXIT

if [ -f "${1:-}/encoder.onnx" ]; then  # an export given (CI: the demo that make test built)
    model=$(cd "$1" && pwd)
else
    .venv/bin/python -m triplex.training.demo --output "$work/demo" --sentences 600 --epochs 2 2>/dev/null
    model="$work/demo/export"
fi
python3 -m venv "$work/serve"
# the images' requirements, installed with the development environment's uv (pip takes the same, slower)
.venv/bin/uv pip install --quiet --python "$work/serve/bin/python" "onnxruntime>=1.18" -r docker/requirements-serve.txt
.venv/bin/uv pip install --quiet --python "$work/serve/bin/python" --no-deps .
if "$work/serve/bin/python" -c "import torch" 2>/dev/null; then
    echo "check-serving: torch is installed in the serving environment" >&2; exit 1
fi
port=$("$work/serve/bin/python" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
entrypoint="$PWD/docker/entrypoint.sh"
cd "$work"  # outside the checkout, whose folders must not stand in for the installed package
"$work/serve/bin/python" - <<'END'
from importlib.metadata import distribution
names = sorted({f.parts[0] for f in distribution("triplex").files} - {".."})  # "..": the console script
print("check-serving: top-level names in site-packages:", ", ".join(names))
assert [n for n in names if not n.endswith(".dist-info")] == ["triplex"], names
END
PATH="$work/serve/bin:$PATH" TRIPLEX_MODEL_DIR="$model" TRIPLEX_PORT="$port" \
    TRIPLEX_PROVIDER=cpu "$entrypoint" > "$work/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do
    curl -sf "127.0.0.1:$port/health/ready" > /dev/null && break
    sleep 0.2
done
answer=$(curl -sf "127.0.0.1:$port/v1/extract" -H 'content-type: application/json' \
    -d '{"text": "Alice Moreau, who was born in Osaka, works for Kestrel Foods."}')
echo "check-serving: $answer"
echo "$answer" | grep -q '"predicate":"born_in"' || { cat "$work/server.log"; exit 1; }
echo "check-serving: the serving-only environment answers"
