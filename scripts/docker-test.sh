#!/usr/bin/env bash
# make docker-test: build the images and run the Compose stack for real, then test it from outside.
#
#   1. hadolint the Dockerfile
#   2. build the runtime and trainer images; report their sizes
#   3. docker compose up --wait --scale api=2 (timed)
#   4. the integration suite (tests/integration) against the load balancer's ports (HTTP, and gRPC)
#   5. the stack's own checks (tests/docker): both replicas serve; a replica killed or stopped mid-burst costs
#      (almost) no failed request; a newly trained version is served by the running replicas; an api on an empty
#      models folder exits with a clear log line and is reported unhealthy
#   6. the memory of the replicas under a load burst (scripts/footprint.py)
#   7. the same for the slim image (target runtime-slim: LiteRT, no TensorFlow): its size, start to ready, the
#      whole integration suite against a stack of it, and its memory under load
#   8. docker compose down -v, also when anything above failed
#
# Needs a Docker engine with Compose v2 (here: eval "$(../shared/container-env/up)"), and the dev virtualenv.
# Variables: COMPOSE_PROJECT_NAME (default digit-serve-test), DIGIT_SERVE_LB_PORT (default 18080, so that a
# stack started by hand on 8080 is left alone), PYTHON (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."

export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-digit-serve-test}
export DIGIT_SERVE_LB_ADDRESS=127.0.0.1
export DIGIT_SERVE_LB_PORT=${DIGIT_SERVE_LB_PORT:-18080}
export DIGIT_SERVE_LB_GRPC_PORT=${DIGIT_SERVE_LB_GRPC_PORT:-18081}
export DIGIT_SERVE_PROMETHEUS_PORT=${DIGIT_SERVE_PROMETHEUS_PORT:-19090}
PYTHON=${PYTHON:-.venv/bin/python}
REPLICAS=2
BASE_URL="http://127.0.0.1:${DIGIT_SERVE_LB_PORT}"
REPORT=$(mktemp -t digit-serve-docker-report.XXXXXX)
SLIM_CONTAINER="$COMPOSE_PROJECT_NAME-slim-run"  # the slim image run alone, for its start-up and memory

say() { printf '\n== docker-test: %s\n' "$*"; }

cleanup() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    say "failed (exit $status); the stack's last log lines:"
    docker compose ps --all || true
    docker compose logs --tail 40 || true
  fi
  if [ -s "$REPORT" ]; then
    say "measurements"
    cat "$REPORT"
  fi
  docker compose --profile train --profile monitoring down --volumes --remove-orphans >/dev/null 2>&1 || true
  docker rm --force "$SLIM_CONTAINER" >/dev/null 2>&1 || true
  for case in empty-models-folder model-without-versions; do  # tests/docker/test_empty_models.py's stacks
    docker compose --project-name "$COMPOSE_PROJECT_NAME-$case" down --volumes --remove-orphans >/dev/null 2>&1 || true
  done
  rm -f "$REPORT"
  exit "$status"
}
trap cleanup EXIT

say "hadolint Dockerfile"
if command -v hadolint >/dev/null; then
  hadolint Dockerfile
else
  docker run --rm -i hadolint/hadolint <Dockerfile
fi

# Whether the service at URL answers /health/ready with 200 (the model is loaded and warmed).
is_ready() {
  "$PYTHON" -c 'import sys, urllib.request
try: urllib.request.urlopen(sys.argv[1] + "/health/ready", timeout=1)
except Exception: sys.exit(1)' "$1"
}

elapsed() { awk -v from="$1" -v to="$EPOCHREALTIME" 'BEGIN { printf "%.1f s", to - from }'; }

say "build the runtime and trainer images"
started=$EPOCHREALTIME
docker compose --profile train --profile monitoring build
echo "docker compose build (runtime + trainer): $(elapsed "$started")" | tee -a "$REPORT"
for image in digit-serve digit-serve-trainer digit-serve-prometheus; do
  docker image inspect --format '{{.Size}}' "$image:${DIGIT_SERVE_TAG:-latest}" \
    | awk -v name="$image" '{ printf "image size: %s %.2f GB (%d MB)\n", name, $1 / 1e9, $1 / 1e6 }' | tee -a "$REPORT"
done

say "start the stack: $REPLICAS api replicas behind lb on $BASE_URL"
docker compose --profile train --profile monitoring down --volumes --remove-orphans >/dev/null 2>&1
started=$EPOCHREALTIME
docker compose --profile monitoring up --detach --wait --no-build --scale "api=$REPLICAS"
echo "docker compose up --wait --scale api=$REPLICAS: $(elapsed "$started")" | tee -a "$REPORT"
docker compose ps

say "integration tests against the load balancer"
DIGIT_SERVE_TEST_URL=$BASE_URL DIGIT_SERVE_TEST_GRPC="127.0.0.1:$DIGIT_SERVE_LB_GRPC_PORT" "$PYTHON" -m pytest tests/integration

say "the stack's checks: balancing, failover, new model versions, empty models folder, monitoring"
DIGIT_SERVE_DOCKER_TESTS=1 DIGIT_SERVE_TEST_URL=$BASE_URL DIGIT_SERVE_DOCKER_REPORT=$REPORT \
  DIGIT_SERVE_PROMETHEUS_URL="http://127.0.0.1:$DIGIT_SERVE_PROMETHEUS_PORT" \
  "$PYTHON" -m pytest tests/docker -v

say "memory under load: $REPLICAS replicas of the full image"
PYTHONPATH=. "$PYTHON" scripts/footprint.py "$BASE_URL" --label "full image" $(docker compose ps --quiet api) | tee -a "$REPORT"

say "the slim image (runtime-slim): build, start-up, the integration suite, memory"
docker compose --profile train --profile monitoring down --volumes --remove-orphans >/dev/null 2>&1
export DIGIT_SERVE_IMAGE_TARGET=runtime-slim DIGIT_SERVE_TAG=slim-test
docker compose build api
docker image inspect --format '{{.Size}}' "digit-serve:$DIGIT_SERVE_TAG" \
  | awk '{ printf "image size: digit-serve (runtime-slim) %.2f GB (%d MB)\n", $1 / 1e9, $1 / 1e6 }' | tee -a "$REPORT"
if docker run --rm --entrypoint python "digit-serve:$DIGIT_SERVE_TAG" -c 'import importlib.util as u, sys
sys.exit(any(u.find_spec(name) for name in ("tensorflow", "keras", "h5py", "matplotlib")))'; then
  echo "runtime-slim: no tensorflow, keras, h5py or matplotlib installed" | tee -a "$REPORT"
else
  echo "runtime-slim has TensorFlow, Keras, h5py or matplotlib in it" >&2
  exit 1
fi
# Start to ready: from `docker run` to the first 200 of /health/ready (model loaded and warmed), three times.
slim_port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
for attempt in 1 2 3; do
  started=$EPOCHREALTIME
  container=$(docker run --detach --name "$SLIM_CONTAINER" --publish "127.0.0.1:$slim_port:8000" "digit-serve:$DIGIT_SERVE_TAG")
  until is_ready "http://127.0.0.1:$slim_port"; do
    sleep 0.05
  done
  echo "runtime-slim: docker run to ready ($attempt of 3): $(elapsed "$started")" | tee -a "$REPORT"
  docker rm --force "$container" >/dev/null
done
# One small replica of the default model alone (what a scale-to-zero deployment runs), under the same load.
container=$(docker run --detach --name "$SLIM_CONTAINER" --publish "127.0.0.1:$slim_port:8000" \
  --env DIGIT_SERVE_MODEL_DIR=/app/models/mnist_convnet "digit-serve:$DIGIT_SERVE_TAG")
until is_ready "http://127.0.0.1:$slim_port"; do
  sleep 0.05
done
PYTHONPATH=. "$PYTHON" scripts/footprint.py "http://127.0.0.1:$slim_port" --label "runtime-slim, default model only" \
  "$container" | tee -a "$REPORT"
docker rm --force "$container" >/dev/null
started=$EPOCHREALTIME
docker compose up --detach --wait --no-build --scale "api=$REPLICAS"
echo "runtime-slim: docker compose up --wait --scale api=$REPLICAS: $(elapsed "$started")" | tee -a "$REPORT"
DIGIT_SERVE_TEST_URL=$BASE_URL DIGIT_SERVE_TEST_GRPC="127.0.0.1:$DIGIT_SERVE_LB_GRPC_PORT" "$PYTHON" -m pytest tests/integration
PYTHONPATH=. "$PYTHON" scripts/footprint.py "$BASE_URL" --label "runtime-slim" $(docker compose ps --quiet api) | tee -a "$REPORT"
docker compose down --volumes --remove-orphans >/dev/null 2>&1
docker image rm "digit-serve:$DIGIT_SERVE_TAG" >/dev/null

say "passed"
