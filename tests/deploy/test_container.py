"""Dockerfile, compose and Kubernetes manifests: valid, and consistent with the config keys."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import load_config
from tests.conftest import REPO
from tests.deploy.catalogue import DEPLOY

K8S = DEPLOY / "k8s"
_COMPOSE_VAR = re.compile(r"\$\{([A-Z_]+)(?::([?-])([^}]*))?\}")


def load_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def k8s(kind: str) -> dict[str, Any]:
    found = [
        doc for path in sorted(K8S.glob("*.yaml")) for doc in load_all(path) if doc["kind"] == kind
    ]
    assert len(found) == 1, f"expected one {kind} in deploy/k8s, found {len(found)}"
    return found[0]


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))


def gateway_services() -> dict[str, Any]:
    return {name: s for name, s in compose()["services"].items() if name.startswith("gateway-")}


def dockerfile_env() -> dict[str, str]:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(re.findall(r"(\w+)=(\S+)", line))
    return env


def interpolated(value: str) -> str:
    """A compose value with ${VAR:?msg} given a sample and ${VAR:-default} its default."""

    def one(match: re.Match[str]) -> str:
        return match[3] if match[2] == "-" else "sample-secret"

    return _COMPOSE_VAR.sub(one, str(value))


def gateway_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith("GATEWAY_")}


def test_every_yaml_and_json_file_under_deploy_parses() -> None:
    paths = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))
    assert len(paths) >= 10
    for path in paths:
        assert load_all(path), f"{path} is empty"


def test_dockerfile() -> None:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert re.findall(r"^FROM (\S+)", text, re.MULTILINE) == ["python:3.11-slim"] * 2
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    healthcheck = text[text.index("HEALTHCHECK") :].split("\n\n")[0]
    assert "/healthz" in healthcheck
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE):
        for name in source.split():
            assert (REPO / name).exists(), f"COPY {name}: not in the repository"
    assert "COPY specs" in text  # /openapi.json serves specs/openapi.json
    env = dockerfile_env()
    assert env["GATEWAY_HOST"] == "0.0.0.0"
    assert f"EXPOSE {env['GATEWAY_PORT']}" in text
    load_config(env=gateway_env(env))
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    assert "gateway" not in ignored and "specs" not in ignored


def test_compose_runs_postgres_two_replicas_a_proxy_prometheus_and_grafana() -> None:
    services = compose()["services"]
    assert {"postgres", "proxy", "prometheus", "grafana"} <= set(services)
    replicas = gateway_services()
    assert len(replicas) == 2
    configs = [
        load_config(env=gateway_env({k: interpolated(v) for k, v in s["environment"].items()}))
        for s in replicas.values()
    ]
    assert len({c.replica_id for c in configs}) == 2  # one live process per replica id
    assert len({c.audit.chain_id for c in configs}) == 2  # one audit hash chain per writer
    # ... and one data dir (keys, media) for all of them.
    data_dirs = {
        volume for s in replicas.values() for volume in s["volumes"] if "/var/lib" in volume
    }
    assert len(data_dirs) == 1
    assert data_dirs.pop().split(":")[1] == dockerfile_env()["GATEWAY_DATA_DIR"]
    for name, service in replicas.items():
        assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).exists()
        env = {k: interpolated(v) for k, v in service["environment"].items()}
        config = load_config(env=gateway_env(env))
        assert config.database_url.startswith("postgresql://"), name
        grace = int(service["stop_grace_period"].rstrip("s"))
        assert grace > config.server.shutdown_timeout_s
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"compose mounts missing {source}"


def test_proxy_and_prometheus_reach_every_replica() -> None:
    replicas = {f"{name}:8080" for name in gateway_services()}
    nginx = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    assert set(re.findall(r"^\s*server (\S+?)[ ;]", nginx, re.MULTILINE)) == replicas
    assert nginx.count("{") == nginx.count("}")
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = prometheus["scrape_configs"]
    assert set(job["static_configs"][0]["targets"]) == replicas
    for rule_file in prometheus["rule_files"]:
        assert (DEPLOY / "prometheus" / rule_file).exists()


def test_grafana_provisions_the_dashboard_from_the_mounted_folder() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    (provider,) = load_all(DEPLOY / "grafana/provisioning/dashboards/dma-gateway.yaml")[0][
        "providers"
    ]
    folder = {target: source for source, target in mounts.items()}[provider["options"]["path"]]
    assert (DEPLOY / folder / "dma-gateway.json").exists()
    (datasource,) = load_all(DEPLOY / "grafana/provisioning/datasources/prometheus.yaml")[0][
        "datasources"
    ]
    assert datasource["url"].endswith(":9090") and "prometheus" in compose()["services"]


def test_k8s_deployment_probes_grace_and_config() -> None:
    deployment = k8s("Deployment")
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    (container,) = pod["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    configmap = k8s("ConfigMap")
    assert container["envFrom"] == [{"configMapRef": {"name": configmap["metadata"]["name"]}}]
    (secret,) = load_all(K8S / "secret.example.yaml")
    env = dict(configmap["data"])
    for item in container["env"]:
        if "fieldRef" in item["valueFrom"]:
            env[item["name"]] = "dma-gateway-7d9f8c6b5-x2x4q"  # a pod name
            continue
        ref = item["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"]
        env[item["name"]] = secret["stringData"][ref["key"]]
    config = load_config(env=gateway_env(env))
    # Each pod is its own replica, writing its own audit chain.
    assert config.replica_id == config.audit.chain_id == "dma-gateway-7d9f8c6b5-x2x4q"
    assert config.server.host == "0.0.0.0"
    (port,) = container["ports"]
    assert port["containerPort"] == config.server.port
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    assert grace > pre_stop + config.server.shutdown_timeout_s
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    data = volumes[mounts[config.data_dir]]["persistentVolumeClaim"]["claimName"]
    pvc = k8s("PersistentVolumeClaim")
    assert pvc["metadata"]["name"] == data
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]  # shared by every replica


def test_k8s_service_hpa_and_pdb_point_at_the_deployment() -> None:
    deployment = k8s("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    service = k8s("Service")
    assert service["spec"]["selector"] == labels
    port_names = {p["name"] for p in container["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names
    target = k8s("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    pdb = k8s("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == labels
    hpa = k8s("HorizontalPodAutoscaler")["spec"]
    assert hpa["minReplicas"] > pdb["spec"]["minAvailable"]  # a drain never blocks forever
    kustomization = load_all(K8S / "kustomization.yaml")[0]
    for resource in kustomization["resources"]:
        assert (K8S / resource).exists()
    assert "secret.example.yaml" not in kustomization["resources"]


@pytest.mark.parametrize("name", ["GATEWAY_NO_SUCH_KEY", "GATEWAY_SERVER__NO_SUCH_KEY"])
def test_an_unknown_gateway_variable_would_be_caught(name: str) -> None:
    from gateway.config import ConfigError

    with pytest.raises(ConfigError):
        load_config(env={name: "1"})


def test_replicas_believe_the_client_address_from_the_proxy_alone() -> None:
    import ipaddress

    nginx = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in nginx
    proxy = compose()["services"]["proxy"]
    address = ipaddress.ip_address(proxy["networks"]["default"]["ipv4_address"])
    for service in gateway_services().values():
        env = {k: interpolated(v) for k, v in service["environment"].items()}
        trusted = load_config(env=gateway_env(env)).server.trusted_proxies
        assert [ipaddress.ip_address(t) for t in trusted] == [address]
