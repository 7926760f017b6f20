#!/usr/bin/env python3
"""Checks the Kubernetes examples in this directory: each document parses as YAML, has the kind and
apiVersion expected, and uses only fields of those objects, as the Kubernetes API reference lists
them (v1.34): https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/job-v1/ and
.../pod-v1/, .../config-and-storage-resources/config-map-v1/,
.../authentication-resources/service-account-v1/. Run: python3 scenarios/k8s/check.py
"""

import pathlib
import sys

import yaml

META = {"name", "namespace", "labels", "annotations"}
# Field sets of the objects used here; a typo (`completionsMode`) is not silently ignored.
FIELDS = {
    "Job": {"apiVersion", "kind", "metadata", "spec"},
    "JobSpec": {"template", "parallelism", "completions", "completionMode", "backoffLimit",
                "backoffLimitPerIndex", "maxFailedIndexes", "activeDeadlineSeconds",
                "ttlSecondsAfterFinished", "suspend", "selector", "manualSelector",
                "podFailurePolicy", "successPolicy", "podReplacementPolicy", "managedBy"},
    "PodTemplateSpec": {"metadata", "spec"},
    "PodSpec": {"containers", "initContainers", "volumes", "restartPolicy", "serviceAccountName",
                "securityContext", "nodeSelector", "affinity", "tolerations",
                "terminationGracePeriodSeconds", "activeDeadlineSeconds",
                "topologySpreadConstraints", "priorityClassName"},
    "Container": {"name", "image", "imagePullPolicy", "command", "args", "env", "envFrom",
                  "resources", "securityContext", "volumeMounts", "workingDir", "ports"},
    "SecurityContext": {"readOnlyRootFilesystem", "allowPrivilegeEscalation", "runAsNonRoot",
                        "runAsUser", "runAsGroup", "capabilities", "privileged",
                        "seccompProfile"},
    "VolumeMount": {"name", "mountPath", "readOnly", "subPath"},
    "Volume": {"name", "configMap", "emptyDir", "secret", "persistentVolumeClaim"},
    "EnvVar": {"name", "value", "valueFrom"},
    "Resources": {"requests", "limits"},
    "ConfigMap": {"apiVersion", "kind", "metadata", "data", "binaryData", "immutable"},
    "ServiceAccount": {"apiVersion", "kind", "metadata", "secrets", "imagePullSecrets",
                       "automountServiceAccountToken"},
}
API_VERSION = {"Job": "batch/v1", "ConfigMap": "v1", "ServiceAccount": "v1"}


def check(kind, value, where, errors):
    if not isinstance(value, dict):
        errors.append(f"{where}: expected a {kind} object")
        return
    for key in sorted(set(value) - FIELDS[kind]):
        errors.append(f"{where}.{key}: not a field of {kind}")


def check_document(doc, where, errors):
    kind = doc.get("kind")
    if API_VERSION.get(kind) != doc.get("apiVersion"):
        errors.append(f"{where}: kind {kind} with apiVersion {doc.get('apiVersion')}")
        return
    check(kind, doc, where, errors)
    for key in sorted(set(doc.get("metadata", {})) - META):
        errors.append(f"{where}.metadata.{key}: not an ObjectMeta field used here")
    if kind != "Job":
        return
    spec = doc["spec"]
    check("JobSpec", spec, f"{where}.spec", errors)
    if spec.get("completionMode", "NonIndexed") not in ("Indexed", "NonIndexed"):
        errors.append(f"{where}.spec.completionMode: Indexed or NonIndexed")
    template = spec["template"]
    check("PodTemplateSpec", template, f"{where}.spec.template", errors)
    pod = template["spec"]
    check("PodSpec", pod, f"{where}.spec.template.spec", errors)
    if pod.get("restartPolicy") not in ("Never", "OnFailure"):
        errors.append(f"{where}: a Job's restartPolicy is Never or OnFailure")
    for i, container in enumerate(pod["containers"]):
        at = f"{where}.spec.template.spec.containers[{i}]"
        check("Container", container, at, errors)
        if not all(isinstance(a, str) for a in container.get("args", [])):
            errors.append(f"{at}.args: every argument must be a string (quote numbers)")
        check("SecurityContext", container.get("securityContext", {}), f"{at}.securityContext", errors)
        check("Resources", container.get("resources", {}), f"{at}.resources", errors)
        for j, mount in enumerate(container.get("volumeMounts", [])):
            check("VolumeMount", mount, f"{at}.volumeMounts[{j}]", errors)
        for j, env in enumerate(container.get("env", [])):
            check("EnvVar", env, f"{at}.env[{j}]", errors)
    for i, volume in enumerate(pod.get("volumes", [])):
        check("Volume", volume, f"{where}.spec.template.spec.volumes[{i}]", errors)


def main():
    errors = []
    for path in sorted(pathlib.Path(__file__).parent.glob("*.yaml")):
        for n, doc in enumerate(yaml.safe_load_all(path.read_text())):
            check_document(doc, f"{path.name} document {n + 1}", errors)
    for error in errors:
        print(error, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
