#!/usr/bin/env bash
# Validate deploy/k8s/ against the Kubernetes API schemas (PyPI kubernetes-validate, requirements/deploy.txt).
#
#   scripts/k8s-validate.sh            # needs no cluster, no Docker; pip install -r requirements/deploy.txt
#
# Every resource file must be listed in kustomization.yaml (and every listed file must exist), and each must pass
# --strict validation (unknown fields are errors) against the oldest and the newest Kubernetes version we support.
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_DIR=deploy/k8s
KUBERNETES_VERSIONS=${KUBERNETES_VERSIONS:-"1.30.0 1.37.0"}
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
VALIDATE=${KUBERNETES_VALIDATE:-$(dirname "$PYTHON")/kubernetes-validate}
command -v "$VALIDATE" >/dev/null || VALIDATE=kubernetes-validate
command -v "$VALIDATE" >/dev/null || {
  echo "kubernetes-validate not found: pip install -r requirements/deploy.txt -c requirements/constraints.txt" >&2
  exit 1
}

# The resources kustomization.yaml lists, checked against the YAML files present.
listing=$("$PYTHON" - "$K8S_DIR" <<'PY'
import pathlib, sys
import yaml

folder = pathlib.Path(sys.argv[1])
listed = yaml.safe_load((folder / "kustomization.yaml").read_text())["resources"]
present = {path.name for path in folder.glob("*.yaml")} - {"kustomization.yaml"}
missing, unlisted = sorted(set(listed) - present), sorted(present - set(listed))
if missing or unlisted:
    sys.exit(f"kustomization.yaml: listed but missing: {missing}; present but not listed: {unlisted}")
print("\n".join(f"{folder}/{name}" for name in listed))
PY
)
mapfile -t resources <<<"$listing"

for version in $KUBERNETES_VERSIONS; do
  "$VALIDATE" --strict --kubernetes-version "$version" "${resources[@]}"
done
echo "k8s manifests: ${#resources[@]} resources valid against Kubernetes ${KUBERNETES_VERSIONS// /, }"
