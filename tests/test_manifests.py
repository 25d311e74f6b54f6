"""The Kubernetes manifests: core resources against Kubernetes' own schema, KubeRay resources for what we use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from triplex.service.settings import ServiceSettings

from .conftest import ROOT

K8S = ROOT / "docker" / "k8s"
VERSION = kubernetes_validate.latest_version()


def documents(name: str) -> list[dict]:
    return list(yaml.safe_load_all((K8S / name).read_text()))


def pod_templates(cluster: dict) -> list[dict]:
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    return [group["template"] for group in groups]


def test_serving_resources_are_valid_kubernetes() -> None:
    found = {document["kind"]: document for document in documents("serving.yaml")}
    assert set(found) == {"Deployment", "Service", "HorizontalPodAutoscaler"}
    for document in found.values():
        kubernetes_validate.validate(document, VERSION, strict=True)
    container = found["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert found["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == found["Deployment"]["metadata"]["name"]
    assert found["Service"]["spec"]["selector"] == found["Deployment"]["spec"]["selector"]["matchLabels"]


def test_the_validator_catches_a_misspelt_field() -> None:
    deployment = documents("serving.yaml")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSION, strict=True)


@pytest.mark.parametrize("name", ["rayjob.yaml", "rayservice.yaml"])
def test_kuberay_resources_carry_valid_pods(name: str) -> None:
    (resource,) = documents(name)
    assert resource["apiVersion"] == "ray.io/v1"
    cluster = resource["spec"]["rayClusterSpec"]
    assert cluster["rayVersion"].startswith("2.")
    for template in pod_templates(cluster):  # each pod template as a core PodTemplate, in the real schema
        kubernetes_validate.validate(
            {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template},
            VERSION,
            strict=True,
        )
        assert template["spec"]["containers"][0]["image"].startswith("triplex-ray")
    for group in cluster["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def test_rayjob_runs_the_bulk_command() -> None:
    (job,) = documents("rayjob.yaml")
    entrypoint = job["spec"]["entrypoint"].split()
    assert entrypoint[:4] == ["triplex", "extract", "--ray", "--address"] and "--output" in entrypoint
    from triplex.cli import build_parser

    args = build_parser().parse_args([part.strip("'") for part in entrypoint[1:]])
    assert args.ray and args.address == "auto" and args.model == "/models/export"


def test_rayservice_config_is_what_serve_writes(tmp_path: Path, trained: tuple[Path, Path]) -> None:
    (service,) = documents("rayservice.yaml")
    config = yaml.safe_load(service["spec"]["serveConfigV2"])
    written = tmp_path / "serve.yaml"
    flags = ["--replicas", "auto", "--max-replicas", "8", "--gpus-per-replica", "1", "--host", "0.0.0.0"]
    command = [sys.executable, "-m", "triplex.service", "--model", str(trained[1]), "--ray", *flags]
    result = subprocess.run([*command, "--write-config", str(written)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    expected = yaml.safe_load(written.read_text())
    expected["applications"][0]["args"]["model_dir"] = "/models/export"
    assert config == expected
    args = config["applications"][0]["args"]
    assert set(args) - {"replicas", "max_replicas", "gpus_per_replica", "cpus_per_replica"} <= set(
        ServiceSettings.model_fields
    )
