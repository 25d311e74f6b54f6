#!/bin/sh
# Serve the export folder mounted at $TRIPLEX_MODEL_DIR (default /models); flags pass through.
set -e
if [ ! -f "${TRIPLEX_MODEL_DIR:-/models}/encoder.onnx" ]; then
    echo "triplex: error: no export in ${TRIPLEX_MODEL_DIR:-/models}; mount one: -v \"\$PWD/export:/models\"" >&2
    exit 2
fi
exec python -m triplex.service "$@"
