"""The rendered chart, the value sets it is tested with, and the schemas its manifests meet.

The chart is rendered by real Helm (helm-python-sdk). Built-in kinds are validated against
Kubernetes' own schemas (kubernetes-validate, strict: unknown fields fail). The CRDs the
chart uses (KEDA, Prometheus Operator) have no schema there, so they are checked against the
structure below, written from the fields those operators define.
"""

from __future__ import annotations

import base64
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "helm" / "synthgate"
RELEASE = "sg"
NAMESPACE = "imagegen"
# The chart's lowest supported Kubernetes (Chart.yaml kubeVersion) and the newest schemas.
KUBE_VERSIONS = ("1.27", kubernetes_validate.utils.latest_version())

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Rendered:
    """The documents one render produced, with lookups by kind and name."""

    documents: list[Manifest]
    notes: str

    def of_kind(self, kind: str) -> list[Manifest]:
        return [doc for doc in self.documents if doc["kind"] == kind]

    def get(self, kind: str, name: str) -> Manifest:
        found = [doc for doc in self.of_kind(kind) if doc["metadata"]["name"] == name]
        assert found, f"no {kind} {name}; have {self.names(kind)}"
        return found[0]

    def names(self, kind: str) -> set[str]:
        return {doc["metadata"]["name"] for doc in self.of_kind(kind)}

    def kinds(self) -> set[str]:
        return {doc["kind"] for doc in self.documents}

    def secret_data(self, name: str) -> dict[str, str]:
        secret = self.get("Secret", name)
        return {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}


def parse_rendered(rendered: dict[str, str]) -> Rendered:
    documents: list[Manifest] = []
    notes = ""
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        documents.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return Rendered(documents, notes)


@functools.cache
def loaded_chart() -> helm_python.Chart:
    """The chart, loaded once per test process (a loaded chart is immutable)."""
    return helm_python.Chart.load(CHART_DIR)


def render(values: dict[str, Any] | None = None) -> Rendered:
    """Render the chart as `helm install sg ./helm/synthgate -n imagegen -f values` would."""
    rendered = loaded_chart().render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return parse_rendered(rendered)


# Values that stand for secrets: none of them may appear outside a Secret.
SENTINELS = {
    "redis": "redis-pw-SENTINEL",
    "aws_id": "AKIA-SENTINEL",
    "aws_secret": "aws-secret-SENTINEL",
    "upstream": "sk-upstream-SENTINEL",
    "account": "sk-account-SENTINEL",
    "admin": "admin-token-SENTINEL-0123456789abcdef",
}

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}

# A company fine-tune of SDXL served under its own name by a GPU pool of its own, and
# wanx-v1 replaced by an entry of the operator's (the application's catalog format).
FINE_TUNE = {
    "name": "acme-sdxl",
    "runs": "local",
    "family": "sdxl",
    "pool": "gpu.acme",
    "size": {"default": "1024*1024", "choices": ["1024*1024", "768*1344", "1344*768"]},
    "n": {"min": 1, "max": 4, "default": 1},
    "steps": {"min": 1, "max": 50, "default": 30},
    "scale": {"min": 1, "max": 15, "default": 7.5},
    "seed": {"min": 0, "max": 2147483647},
    "negative_prompt": {"max_words": 75},
}
WANX_V1 = {
    "name": "wanx-v1",
    "runs": "upstream",
    "upstream_model": "wanx-v1",
    "prompt": {"max_chars": 800},
    "negative_prompt": None,
    "size": {"default": "1024*1024", "choices": ["1024*1024", "720*1280", "1280*720"]},
    "n": {"min": 1, "max": 4, "default": 4},
    "seed": {"min": 0, "max": 4294967290},
    "fields": {
        "style": {
            "type": "choice",
            "choices": ["<auto>", "<anime>"],
            "default": "<auto>",
            "in": "parameters",
        },
        "ref_strength": {"type": "number", "min": 0.0, "max": 1.0, "default": 0.5},
    },
}

# The value sets the chart is rendered, linted and validated with.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "upstream-only": {
        "upstream": {"apiKey": SENTINELS["upstream"]},
        "admin": {"token": SENTINELS["admin"]},
        "config": {
            "routes": {"stable-diffusion-xl": "upstream", "stable-diffusion-v1.5": "upstream"}
        },
        "workers": {"upstream": {"enabled": True, "replicas": 2}, "gpu": {"pools": []}},
    },
    "gpu-pools-keda": {
        "externalRedis": {
            "url": f"rediss://default:{SENTINELS['redis']}@redis.data.svc.cluster.local:6380/2"
        },
        "storage": {
            "s3": {
                "bucket": "images",
                "endpointUrl": "http://minio.storage:9000",
                "publicEndpointUrl": "https://images.example.com",
                "addressingStyle": "path",
                "accessKeyId": SENTINELS["aws_id"],
                "secretAccessKey": SENTINELS["aws_secret"],
            }
        },
        "upstream": {"apiKey": SENTINELS["upstream"]},
        "admin": {"token": SENTINELS["admin"]},
        "config": {"routes": {"stable-diffusion-xl": "both"}},
        "metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}},
        "workers": {
            "upstream": {"enabled": True, "keda": {"enabled": True}},
            "gpu": {
                "keda": {"enabled": True, "maxReplicaCount": 8},
                "pools": [
                    {
                        "name": "sdxl",
                        "kind": "sdxl",
                        "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L40S"},
                        "terminationGracePeriodSeconds": 1200,
                        "weights": {"existingClaim": "models", "subPath": "sdxl-base-1.0"},
                    },
                    {
                        "name": "sd15",
                        "kind": "sd15",
                        "queue": "gpu.sd15",
                        "gpuResourceName": "nvidia.com/mig-3g.40gb",
                        "keda": {"maxReplicaCount": 2, "listLength": 4},
                        "weights": {
                            "emptyDirSizeLimit": "10Gi",
                            "download": {
                                "enabled": True,
                                "repoId": "stable-diffusion-v1-5/stable-diffusion-v1-5",
                                "revision": "451f4fe16113bff5a5d2269ed5ad43b0592e9a14",
                                "endpoint": "https://hf-mirror.internal",
                                "tokenSecret": {"name": "hf-token", "key": "token"},
                            },
                        },
                    },
                ],
            },
        },
    },
    "existing-secrets-ingress-netpol": {
        "externalRedis": {"existingSecret": "synthgate-redis", "existingSecretKey": "url"},
        "storage": {"s3": {"existingSecret": "synthgate-s3"}},
        "upstream": {"existingSecret": "synthgate-upstream", "existingSecretKey": "key"},
        "admin": {"existingSecret": "synthgate-admin"},
        "gateway": {
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "host": "imagegen.example.com",
                "tls": {"enabled": True, "secretName": "imagegen-tls"},
            }
        },
        "networkPolicy": {"enabled": True},
        "metrics": {"serviceMonitor": {"enabled": True}},
        "keda": {
            "redis": {
                "address": "redis-master.data.svc:6379",
                "passwordSecret": {"name": "synthgate-redis", "key": "password"},
            }
        },
        "workers": {"upstream": {"enabled": True, "keda": {"enabled": True}}},
    },
    # Every optional knob at once, so each template branch is rendered and validated.
    "all-options": {
        "fullnameOverride": "imagegen",
        "images": {
            "synthgate": {"digest": "sha256:" + "a" * 64, "pullPolicy": "Always"},
            "gpuWorker": {"tag": "0.1.0-cuda12"},
        },
        "imagePullSecrets": [{"name": "regcred"}],
        "serviceAccount": {
            "name": "imagegen-runner",
            "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/imagegen"},
        },
        "config": {
            "logLevel": "DEBUG",
            "publicUrl": "https://img.example.com/",
            "extraEnv": {"SYNTHGATE_SPILLOVER_QUEUE_DEPTH": 4, "SYNTHGATE_S3_CREATE_BUCKET": True},
            "routes": {"stable-diffusion-xl": "both"},
        },
        "catalog": {"models": [{**FINE_TUNE, "runs": "both", "pool": "gpu.sdxl"}]},
        "upstream": {
            "baseUrl": "https://dashscope.example.com/api/v1",
            "accountsSecret": {"name": "dashscope-accounts", "key": "accounts.json"},
        },
        "gateway": {
            "extraEnv": [{"name": "SYNTHGATE_UPSTREAM_MAX_INFLIGHT", "value": "64"}],
            "podAnnotations": {"example.com/team": "imaging"},
            "nodeSelector": {"pool": "web"},
            "tolerations": [{"key": "web", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {
                "podAntiAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 100,
                            "podAffinityTerm": {
                                "topologyKey": "kubernetes.io/hostname",
                                "labelSelector": {
                                    "matchLabels": {"app.kubernetes.io/component": "gateway"}
                                },
                            },
                        }
                    ]
                }
            },
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "gateway"}},
                }
            ],
            "priorityClassName": "high",
            "service": {"type": "LoadBalancer", "annotations": {"example.com/lb": "internal"}},
            "hpa": {
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
                "minReplicas": 3,
            },
            "ingress": {
                "enabled": True,
                "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "1m"},
                "host": "img.example.com",
                "paths": ["/api/v1", "/v1", "/admin/v1"],
            },
        },
        "networkPolicy": {"enabled": True},
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
            "podMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        },
        "workers": {
            "metricsPort": 9200,
            "upstream": {
                "enabled": True,
                "queue": "upstream.acme-sdxl, upstream.stable-diffusion-xl",
                "extraEnv": [{"name": "SYNTHGATE_UPSTREAM_DEADLINE_SECONDS", "value": "600"}],
                "podAnnotations": {"example.com/team": "imaging"},
                "nodeSelector": {"pool": "workers"},
                "tolerations": [{"key": "workers", "operator": "Exists"}],
                "affinity": {"nodeAffinity": {}},
                "priorityClassName": "batch",
                "keda": {
                    "enabled": True,
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 600}},
                },
            },
            "gpu": {
                "podAnnotations": {"example.com/gpu": "yes"},
                "affinity": {"nodeAffinity": {}},
                "priorityClassName": "gpu",
                "strategy": {"type": "Recreate"},
                "pools": [
                    {
                        "name": "sdxl",
                        "kind": "sdxl",
                        "device": "auto",
                        "shmSize": "2Gi",
                        "extraEnv": [
                            {"name": "PYTORCH_CUDA_ALLOC_CONF", "value": "expandable_segments:True"}
                        ],
                        "weights": {
                            "existingClaim": "model-cache",
                            "subPath": "sdxl",
                            "download": {
                                "enabled": True,
                                "repoId": "stabilityai/stable-diffusion-xl-base-1.0",
                                "revision": "main",
                                "allowPatterns": [],
                            },
                        },
                    }
                ],
            },
        },
    },
    # DashScope accounts, one key in the chart's Secret and one in a Secret of the operator's,
    # and a catalog sending a fine-tune to a GPU pool of its own and SD 1.5 upstream.
    "accounts-catalog": {
        "upstream": {
            "accounts": [
                {
                    "name": "main",
                    "apiKey": SENTINELS["account"],
                    "submitPerSecond": 2,
                    "maxRunning": 2,
                    "maxRunningByModel": {"wanx-v1": 1, "wan2.5-t2i-preview": 5},
                },
                {
                    "name": "team-b",
                    "existingSecret": "dashscope-keys",
                    "submitPerSecond": 0.5,
                    "models": ["wanx2.1-t2i-turbo", "qwen-image", "stable-diffusion-v1.5"],
                },
            ]
        },
        "catalog": {"models": [FINE_TUNE, WANX_V1]},
        "config": {"routes": {"stable-diffusion-v1.5": "upstream"}},
        "workers": {
            "upstream": {"enabled": True, "keda": {"enabled": True, "maxReplicaCount": 3}},
            "gpu": {
                "pools": [
                    {"name": "sdxl", "kind": "sdxl", "weights": {"existingClaim": "models"}},
                    {
                        "name": "acme",
                        "kind": "sdxl",
                        "queue": "gpu.acme",
                        "weights": {"existingClaim": "models", "subPath": "acme-sdxl"},
                    },
                ]
            },
        },
    },
    "bundled-redis-local-storage": {
        "redis": {"enabled": True, "password": SENTINELS["redis"]},
        "storage": {"backend": "local", "local": {"existingClaim": "synthgate-images"}},
        "networkPolicy": {"enabled": True},
        "workers": {
            "gpu": {
                "keda": {"enabled": True},
                "pools": [{"name": "sdxl", "kind": "sdxl", "weights": {"existingClaim": "models"}}],
            }
        },
    },
}


def _metadata() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }


def _crd(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": _metadata(),
            "spec": spec,
        },
    }


_INT = {"type": "integer", "minimum": 0}
_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["key", "operator"],
                "properties": {
                    "key": {"type": "string"},
                    "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                    "values": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}
_DURATION = {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"}
_SCRAPE_ENDPOINT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["port"],
    "properties": {
        "port": {"type": "string"},
        "path": {"type": "string", "pattern": "^/"},
        "interval": _DURATION,
        "scrapeTimeout": _DURATION,
    },
}

CRD_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("keda.sh/v1alpha1", "ScaledObject"): _crd(
        "keda.sh/v1alpha1",
        "ScaledObject",
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "pollingInterval": _INT,
                "cooldownPeriod": _INT,
                "initialCooldownPeriod": _INT,
                "idleReplicaCount": _INT,
                "minReplicaCount": _INT,
                "maxReplicaCount": _INT,
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string"},
                                "behavior": {"type": "object"},
                            },
                        },
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            # KEDA's metadata is map[string]string: numbers must be quoted.
                            "metadata": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            },
                            "authenticationRef": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "kind": {
                                        "enum": [
                                            "TriggerAuthentication",
                                            "ClusterTriggerAuthentication",
                                        ]
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    ),
    ("keda.sh/v1alpha1", "TriggerAuthentication"): _crd(
        "keda.sh/v1alpha1",
        "TriggerAuthentication",
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "secretTargetRef": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["parameter", "name", "key"],
                        "properties": {
                            "parameter": {"type": "string", "minLength": 1},
                            "name": {"type": "string", "minLength": 1},
                            "key": {"type": "string", "minLength": 1},
                        },
                    },
                }
            },
        },
    ),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _crd(
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": _SELECTOR,
                "endpoints": {"type": "array", "minItems": 1, "items": _SCRAPE_ENDPOINT},
            },
        },
    ),
    ("monitoring.coreos.com/v1", "PodMonitor"): _crd(
        "monitoring.coreos.com/v1",
        "PodMonitor",
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "podMetricsEndpoints"],
            "properties": {
                "selector": _SELECTOR,
                "podMetricsEndpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": _SCRAPE_ENDPOINT,
                },
            },
        },
    ),
    ("monitoring.coreos.com/v1", "PrometheusRule"): _crd(
        "monitoring.coreos.com/v1",
        "PrometheusRule",
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["groups"],
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name", "rules"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": _DURATION,
                            "rules": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["expr"],
                                    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                                    "properties": {
                                        "alert": {"type": "string", "minLength": 1},
                                        "record": {"type": "string", "minLength": 1},
                                        "expr": {"type": ["string", "integer"]},
                                        "for": _DURATION,
                                        "keep_firing_for": _DURATION,
                                        "labels": {
                                            "type": "object",
                                            "additionalProperties": {"type": "string"},
                                        },
                                        "annotations": {
                                            "type": "object",
                                            "additionalProperties": {"type": "string"},
                                        },
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
    ),
}

# The PrometheusRule (monitoring.coreos.com/v1), as Prometheus Operator's CRD defines it.
CRD_SCHEMAS[("monitoring.coreos.com/v1", "PrometheusRule")] = _crd(
    "monitoring.coreos.com/v1",
    "PrometheusRule",
    {
        "type": "object",
        "additionalProperties": False,
        "required": ["groups"],
        "properties": {
            "groups": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name", "rules"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "interval": _DURATION,
                        "rules": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["alert", "expr"],
                                "properties": {
                                    "alert": {
                                        "type": "string",
                                        "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
                                    },
                                    "expr": {"type": "string", "minLength": 1},
                                    "for": _DURATION,
                                    "labels": {
                                        "type": "object",
                                        "additionalProperties": {"type": "string"},
                                    },
                                    "annotations": {
                                        "type": "object",
                                        "additionalProperties": {"type": "string"},
                                    },
                                },
                            },
                        },
                    },
                },
            }
        },
    },
)


def validate_manifest(manifest: Manifest, kube_version: str) -> None:
    """Raise when ``manifest`` does not match its Kubernetes or CRD schema."""
    crd_schema = CRD_SCHEMAS.get((manifest["apiVersion"], manifest["kind"]))
    if crd_schema is not None:
        jsonschema.validate(manifest, crd_schema)
        return
    kubernetes_validate.validate(manifest, kube_version, strict=True)
