#!/usr/bin/env bash
# make docker-test: build the images and run the Compose stack for real, then test it from outside.
#
#   1. hadolint the Dockerfile
#   2. build the runtime and trainer images; report their sizes
#   3. docker compose up --wait --scale api=2 (timed)
#   4. the integration suite (tests/integration) against the load balancer's port
#   5. the stack's own checks (tests/docker): both replicas serve; a replica killed or stopped mid-burst costs
#      (almost) no failed request; a newly trained version is served after an api restart; an api on an empty
#      models folder exits with a clear log line and is reported unhealthy
#   6. docker compose down -v, also when anything above failed
#
# Needs a Docker engine with Compose v2 (here: eval "$(../shared/container-env/up)"), and the dev virtualenv.
# Variables: COMPOSE_PROJECT_NAME (default digit-serve-test), DIGIT_SERVE_LB_PORT (default 18080, so that a
# stack started by hand on 8080 is left alone), PYTHON (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."

export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-digit-serve-test}
export DIGIT_SERVE_LB_ADDRESS=127.0.0.1
export DIGIT_SERVE_LB_PORT=${DIGIT_SERVE_LB_PORT:-18080}
PYTHON=${PYTHON:-.venv/bin/python}
REPLICAS=2
BASE_URL="http://127.0.0.1:${DIGIT_SERVE_LB_PORT}"
REPORT=$(mktemp -t digit-serve-docker-report.XXXXXX)

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
  docker compose --profile train down --volumes --remove-orphans >/dev/null 2>&1 || true
  docker compose --project-name "$COMPOSE_PROJECT_NAME-empty-models" down --volumes --remove-orphans >/dev/null 2>&1 || true
  rm -f "$REPORT"
  exit "$status"
}
trap cleanup EXIT

say "hadolint Dockerfile"
if command -v hadolint >/dev/null; then
  hadolint Dockerfile
else
  docker run --rm -i hadolint/hadolint hadolint - <Dockerfile
fi

say "build the runtime and trainer images"
docker compose --profile train build
image_size() { docker image inspect --format '{{.Size}}' "$1" | awk '{ printf "%.2f GB (%d MB)", $1 / 1e9, $1 / 1e6 }'; }
tag=${DIGIT_SERVE_TAG:-latest}
echo "image sizes: digit-serve:$tag $(image_size "digit-serve:$tag"), digit-serve-trainer:$tag $(image_size "digit-serve-trainer:$tag")" | tee -a "$REPORT"

say "start the stack: $REPLICAS api replicas behind lb on $BASE_URL"
docker compose --profile train down --volumes --remove-orphans >/dev/null 2>&1
started=$EPOCHREALTIME
docker compose up --detach --wait --no-build --scale "api=$REPLICAS"
awk -v from="$started" -v to="$EPOCHREALTIME" -v replicas="$REPLICAS" \
  'BEGIN { printf "docker compose up --wait --scale api=%d: %.1f s\n", replicas, to - from }' | tee -a "$REPORT"
docker compose ps

say "integration tests against the load balancer"
DIGIT_SERVE_TEST_URL=$BASE_URL "$PYTHON" -m pytest tests/integration

say "the stack's checks: balancing, failover, new model versions, empty models folder"
DIGIT_SERVE_DOCKER_TESTS=1 DIGIT_SERVE_TEST_URL=$BASE_URL DIGIT_SERVE_DOCKER_REPORT=$REPORT \
  "$PYTHON" -m pytest tests/docker -v

say "passed"
