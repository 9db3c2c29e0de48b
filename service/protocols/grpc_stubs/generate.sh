#!/usr/bin/env bash
# Regenerate the Python stubs of KServe's Open Inference Protocol (package inference, service GRPCInferenceService)
# from grpc_predict_v2.proto, which is KServe's docs/predict-api/v2/grpc_predict_v2.proto (kserve/kserve at
# aaac4e29, unchanged since 3dc5bfb4) verbatim. grpcio-tools is a dev requirement; the output is committed and
# kept out of lint and type checks (pyproject.toml). Run from anywhere: bash service/protocols/grpc_stubs/generate.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
PYTHON=${PYTHON:-.venv/bin/python}
# Run from the repository root with the proto's path, so that the _grpc module imports its messages as
# service.protocols.grpc_stubs.grpc_predict_v2_pb2 rather than as a top-level module.
"$PYTHON" -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. \
  service/protocols/grpc_stubs/grpc_predict_v2.proto
