#!/usr/bin/env bash
# Validate deploy/k8s/ against the Kubernetes API schemas (PyPI kubernetes-validate, requirements/deploy.txt).
#
#   scripts/k8s-validate.sh            # needs no cluster, no Docker; pip install -r requirements/deploy.txt
#
# Every resource file must be listed in kustomization.yaml (and every listed file must exist), and each must pass
# --strict validation (unknown fields are errors) against the oldest and the newest Kubernetes version we support.
# Each overlay (deploy/k8s/overlays/*) is rendered as kustomize would for what it uses (its image tag, and its
# strategic-merge patches merged into the base's resources, containers matched by name) and validated the same way.
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

# The overlays, rendered into a temporary folder.
rendered=$(mktemp -d)
trap 'rm -rf "$rendered"' EXIT
overlays=$("$PYTHON" - "$K8S_DIR" "$rendered" <<'PY'
import copy, pathlib, sys
import yaml

base, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])


def merge(target, patch):
    """A strategic merge for what the overlays patch: maps merged key by key, lists of named items by name."""
    if isinstance(target, dict) and isinstance(patch, dict):
        for key, value in patch.items():
            target[key] = merge(target[key], value) if key in target else value
        return target
    if isinstance(target, list) and isinstance(patch, list) and all(isinstance(item, dict) and "name" in item for item in patch):
        by_name = {item.get("name"): item for item in target}
        for item in patch:
            if item["name"] not in by_name:
                sys.exit(f"patch names {item['name']!r}, which the base does not have")
            merge(by_name[item["name"]], item)
        return target
    return patch


for overlay in sorted((base / "overlays").glob("*/kustomization.yaml")):
    folder = overlay.parent
    kustomization = yaml.safe_load(overlay.read_text())
    if kustomization["resources"] != ["../.."]:
        sys.exit(f"{overlay}: an overlay here builds on deploy/k8s (resources: [../..])")
    documents = {}
    for name in yaml.safe_load((base / "kustomization.yaml").read_text())["resources"]:
        document = yaml.safe_load((base / name).read_text())
        documents[(document["kind"], document["metadata"]["name"])] = (name, document)
    for patch_entry in kustomization.get("patches", []):
        patch = yaml.safe_load((folder / patch_entry["path"]).read_text())
        key = (patch["kind"], patch["metadata"]["name"])
        if key not in documents:
            sys.exit(f"{folder / patch_entry['path']}: no {key[0]} {key[1]!r} in deploy/k8s")
        merge(documents[key][1], copy.deepcopy(patch))
    tags = {image["name"]: image["newTag"] for image in kustomization.get("images", [])}
    for name, document in documents.values():
        for container in document.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            if container["image"] in tags:
                container["image"] = f"{container['image']}:{tags[container['image']]}"
        target = out / folder.name / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(document))
        print(target)
PY
)
[ -n "$overlays" ] && mapfile -t -O "${#resources[@]}" resources <<<"$overlays"

for version in $KUBERNETES_VERSIONS; do
  "$VALIDATE" --strict --kubernetes-version "$version" "${resources[@]}"
done
echo "k8s manifests: ${#resources[@]} resources (the base's and the overlays' renderings) valid against Kubernetes ${KUBERNETES_VERSIONS// /, }"
