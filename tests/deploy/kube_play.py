"""Adapts rendered Kubernetes manifests for `podman kube play` (podman 4.3, Debian 12).

Usage: kube_play.py RENDERED.yaml OUT.yaml REPLICAS

What podman 4.3 cannot take as Kubernetes does, and what this changes (nothing else):
- a `secret:` volume crashes `kube play` (nil pointer in VolumeFromSecret): the Secret becomes a
  ConfigMap with the same files, mounted the same way;
- a ConfigMap volume's directory gets the files' mode (0644, no search bit), which the non-root
  user cannot enter: ConfigMap volumes get defaultMode 0755;
- `containerPort` is published on the host's 0.0.0.0 (Kubernetes never does that): ports are
  dropped, the tests reach the pod on its own IP as a Service would;
- an emptyDir becomes one named volume shared by every pod of the Deployment: each replica is
  played as its own single-replica Deployment (`<name>-r<i>`) with emptyDirs named after it.
Services, the PodDisruptionBudget, the HPA and NetworkPolicies have no podman counterpart; they
are validated against the Kubernetes schemas instead.
"""

import base64
import copy
import sys

import yaml


def main(rendered: str, out_path: str, replicas: int) -> None:
    docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
    out = []
    for doc in docs:
        kind = doc["kind"]
        if kind == "Secret":
            data = {k: base64.b64decode(v).decode() for k, v in doc.get("data", {}).items()}
            out.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc["metadata"], "data": data})
        elif kind == "ConfigMap":
            out.append(doc)
        elif kind == "Deployment":
            for i in range(replicas):
                out.append(replica(doc, i))
    with open(out_path, "w") as f:
        yaml.safe_dump_all(out, f)


def replica(deployment: dict, i: int) -> dict:
    r = copy.deepcopy(deployment)
    r["metadata"]["name"] += f"-r{i}"
    r["spec"]["replicas"] = 1
    spec = r["spec"]["template"]["spec"]
    empty = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
    own = {name: f'{r["metadata"]["name"]}-{name}' for name in empty}
    for c in spec["containers"]:
        c.pop("ports", None)
        for m in c.get("volumeMounts", []):
            m["name"] = own.get(m["name"], m["name"])
    for v in spec.get("volumes", []):
        v["name"] = own.get(v["name"], v["name"])
        if "secret" in v:
            v["configMap"] = {"name": v.pop("secret")["secretName"]}
        if "configMap" in v:
            v["configMap"]["defaultMode"] = 0o755
    return r


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
