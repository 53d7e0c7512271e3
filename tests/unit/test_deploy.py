"""deploy/: what can be checked without a container engine or a cluster (see deploy/README.md for the rest).

The manifests parse; every Deployment has probes, resources, a non-root security context, the secrets
volume and a command the CLI accepts; kustomizations reference files that exist (and build, when kubectl
is installed); every REFNET_* variable is a real setting; the compose file runs the right commands; the
local NATS cluster configs match their generator and nats-server accepts them.
"""

from __future__ import annotations

import shutil
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from refnet.cli import build_parser
from refnet_dev.embedded import cluster_nodes, nats_node_config
from shared.config import _SECRETS, Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SERVICES = ("intake", "routing", "notify")
SECRET_MOUNT = "/run/secrets/refnet"
# Helper variables composed into others ($(VAR) expansion), not settings themselves.
COMPOSED_ONLY = {"REFNET_DB_PASSWORD"}


def load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def own_yaml_files() -> list[Path]:
    files = [*K8S.rglob("*.yaml"), DEPLOY / "compose.yaml", DEPLOY / "nats" / "values.yaml"]
    return sorted(files)


def k8s_docs() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((K8S / "base").glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += load_all(path)
    return docs


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in k8s_docs() if d.get("kind") == kind}


def valid_env_name(name: str) -> bool:
    fields = {f.name for f in msgspec.structs.fields(Settings)}
    if name in COMPOSED_ONLY:
        return True
    if not name.startswith("REFNET_"):
        return False
    field = name.removeprefix("REFNET_").lower()
    if field.endswith("_file") and field.removesuffix("_file") in _SECRETS:
        return True
    return field in fields


@pytest.mark.parametrize("path", own_yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path: Path) -> None:
    docs = load_all(path)
    assert docs, f"{path} is empty"
    for doc in docs:
        assert isinstance(doc, dict)


def _kustomization_paths(directory: Path) -> list[Path]:
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text())
    refs = [*kust.get("resources", []), *(p["path"] for p in kust.get("patches", []))]
    return [directory / r for r in refs]


@pytest.mark.parametrize(
    "directory", [K8S / "base", K8S / "overlays" / "production"], ids=["base", "production"]
)
def test_kustomization_references_existing_files(directory: Path) -> None:
    for ref in _kustomization_paths(directory):
        assert ref.exists(), f"{ref} (referenced by {directory}/kustomization.yaml) does not exist"
        if ref.is_dir():
            assert (ref / "kustomization.yaml").exists()
            for inner in _kustomization_paths(ref):
                assert inner.exists(), inner
    # Every manifest in the directory is used (nothing silently left out).
    used = {p.resolve() for p in _kustomization_paths(directory)}
    for path in directory.glob("*.yaml"):
        if path.name != "kustomization.yaml":
            assert path.resolve() in used, f"{path} is not referenced by the kustomization"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with kustomize) not installed")
@pytest.mark.parametrize("directory", ["base", "overlays/production"])
def test_kustomize_builds(directory: str) -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(K8S / directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == set(SERVICES)
    assert all(d["metadata"]["namespace"] == "refnet" for d in docs if d["kind"] != "Namespace")
    images = {c["image"] for d in deployments.values() for c in d["spec"]["template"]["spec"]["containers"]}
    assert len(images) == 1
    if directory == "overlays/production":
        assert images == {"ghcr.io/refnet/refnet:0.1.0"}  # pinned, not :latest


def _containers(dep: dict[str, Any]) -> list[dict[str, Any]]:
    spec = dep["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def test_every_service_has_a_deployment_with_probes_and_resources() -> None:
    deployments = of_kind("Deployment")
    assert set(deployments) == set(SERVICES)
    for name, dep in deployments.items():
        spec = dep["spec"]["template"]["spec"]
        main = next(c for c in spec["containers"] if c["name"] == name)
        assert main["args"] == ["serve", name]
        build_parser().parse_args(main["args"])  # a command the CLI accepts
        assert "readinessProbe" in main and "startupProbe" in main, name
        if name == "intake":
            assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert main["startupProbe"]["httpGet"]["path"] == "/healthz"
        else:
            command = main["readinessProbe"]["exec"]["command"]
            assert command == ["refnet", "healthcheck", name]
            build_parser().parse_args(command[1:])
        for c in _containers(dep):
            res = c["resources"]
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res[kind]), f"{name}/{c['name']} {kind}"
            sec = c["securityContext"]
            assert sec["allowPrivilegeEscalation"] is False
            assert sec["readOnlyRootFilesystem"] is True
            assert sec["capabilities"]["drop"] == ["ALL"]
        pod_sec = spec["securityContext"]
        assert pod_sec["runAsNonRoot"] is True and pod_sec["runAsUser"] != 0
        assert spec["automountServiceAccountToken"] is False
        assert spec["terminationGracePeriodSeconds"] >= 30


def test_secrets_come_from_a_secret_volume() -> None:
    config = of_kind("ConfigMap")["refnet-config"]["data"]
    assert config["REFNET_SECRET_KEY_FILE"].startswith(SECRET_MOUNT + "/")
    assert config["REFNET_PII_KEYRING_FILE"].startswith(SECRET_MOUNT + "/")
    assert not any(k in config for k in ("REFNET_SECRET_KEY", "REFNET_PII_MASTER_KEY", "REFNET_DATABASE_URL"))
    for name, dep in of_kind("Deployment").items():
        spec = dep["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["refnet-secrets"]["secret"]["secretName"] == "refnet-secrets"
        main = next(c for c in spec["containers"] if c["name"] == name)
        mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
        assert mounts[SECRET_MOUNT]["name"] == "refnet-secrets" and mounts[SECRET_MOUNT]["readOnly"] is True
        assert {"configMapRef": {"name": "refnet-config"}} in main["envFrom"]
        env = {e["name"]: e for e in main["env"]}
        # The services log in as the RLS-bound role, with the password of the CNPG managed role.
        url = urllib.parse.urlsplit(env["REFNET_DATABASE_URL"]["value"])
        assert url.username == "refnet_app"
        assert url.hostname == "refnet-db-rw"
        assert env["REFNET_DB_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "refnet-db-service"


def test_every_refnet_variable_is_a_setting() -> None:
    names = set(of_kind("ConfigMap")["refnet-config"]["data"])
    for dep in of_kind("Deployment").values():
        for c in _containers(dep):
            names |= {e["name"] for e in c.get("env", [])}
    overlay = yaml.safe_load((K8S / "overlays" / "production" / "patches" / "config.yaml").read_text())
    names |= set(overlay["data"])
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for svc in compose["services"].values():
        names |= {k for k in (svc.get("environment") or {}) if k.startswith("REFNET_")}
    bad = sorted(n for n in names if not valid_env_name(n))
    assert not bad, f"not refnet settings: {bad}"


def test_autoscaling_and_disruption_budgets() -> None:
    hpas = of_kind("HorizontalPodAutoscaler")
    assert set(hpas) == {"routing", "notify"}
    for name, hpa in hpas.items():
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    pdbs = of_kind("PodDisruptionBudget")
    assert {p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] for p in pdbs.values()} == set(
        SERVICES
    )


def test_network_policies_deny_by_default_and_select_real_pods() -> None:
    policies = of_kind("NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    pod_labels = [dep["spec"]["template"]["metadata"]["labels"] for dep in of_kind("Deployment").values()]
    for name, pol in policies.items():
        labels = pol["spec"]["podSelector"].get("matchLabels", {})
        if "app.kubernetes.io/name" in labels and labels["app.kubernetes.io/name"] in SERVICES:
            assert any(labels.items() <= pl.items() for pl in pod_labels), name
    # Only intake accepts traffic from outside, on its HTTP port (its metrics port from Prometheus only);
    # notify alone reaches the internet.
    intake = policies["intake-ingress"]["spec"]
    assert [p["port"] for p in intake["ingress"][0]["ports"]] == [8000]
    assert [p["port"] for p in intake["ingress"][1]["ports"]] == [9103]
    assert [s["namespaceSelector"]["matchLabels"] for s in intake["ingress"][1]["from"]] == [
        {"kubernetes.io/metadata.name": "monitoring"}
    ]
    internet = [
        n
        for n, p in policies.items()
        if any("ipBlock" in t for r in p["spec"].get("egress", []) for t in r.get("to", []))
    ]
    assert sorted(internet) == ["notify-egress-internet", "postgres"]  # postgres: the Kubernetes API only


def test_postgres_is_a_cloudnativepg_cluster_with_the_service_role() -> None:
    cluster = of_kind("Cluster")["refnet-db"]
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    assert cluster["spec"]["instances"] >= 3
    roles = {r["name"]: r for r in cluster["spec"]["managed"]["roles"]}
    app = roles["refnet_app"]
    assert app["superuser"] is False and app["bypassrls"] is False and app["login"] is True
    assert app["passwordSecret"]["name"] == "refnet-db-service"
    assert cluster["spec"]["bootstrap"]["initdb"]["database"] == "refnet"
    intake = of_kind("Deployment")["intake"]["spec"]["template"]["spec"]
    migrate = intake["initContainers"][0]
    assert migrate["args"] == ["migrate"]
    build_parser().parse_args(migrate["args"])
    owner = {v["name"]: v for v in intake["volumes"]}["db-owner"]["secret"]["secretName"]
    assert owner == "refnet-db-app"  # CloudNativePG's secret for the initdb owner


def test_nats_cluster_values_and_urls() -> None:
    values = yaml.safe_load((DEPLOY / "nats" / "values.yaml").read_text())
    assert values["config"]["cluster"] == {"enabled": True, "replicas": 3}
    assert values["config"]["jetstream"]["enabled"] is True
    assert values["config"]["jetstream"]["fileStore"]["enabled"] is True
    config = of_kind("ConfigMap")["refnet-config"]["data"]
    assert config["REFNET_STREAM_REPLICAS"] == "3"
    urls = config["REFNET_NATS_URL"].split(",")
    assert len(urls) == 3 and all(u.startswith("nats://nats-") for u in urls)


def test_local_cluster_configs_match_their_generator() -> None:
    nodes = cluster_nodes()
    for node in nodes:
        path = DEPLOY / "nats" / "cluster-local" / f"{node.name}.conf"
        assert path.read_text() == nats_node_config(node, nodes, f"./data/{node.name}"), (
            f"{path} drifted from refnet_dev.embedded.nats_node_config; regenerate it"
        )


def test_local_cluster_configs_are_valid_for_nats_server() -> None:
    from refnet_dev.embedded import nats_server_binary

    for name in ("n1", "n2", "n3"):
        conf = DEPLOY / "nats" / "cluster-local" / f"{name}.conf"
        out = subprocess.run(
            [nats_server_binary(), "-c", str(conf), "-t"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert out.returncode == 0, out.stderr or out.stdout


def test_compose_runs_the_right_commands() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    for name in SERVICES:
        svc = services[name]
        assert svc["command"] == ["serve", name]
        build_parser().parse_args(svc["command"])
        assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert svc["healthcheck"]["test"] == ["CMD", "refnet", "healthcheck", name]
        assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"]
        assert svc["environment"]["REFNET_DATABASE_URL_FILE"].startswith("/run/secrets/")
    assert services["migrate"]["command"] == ["migrate"]
    assert services["routing"]["deploy"]["replicas"] >= 2
    assert services["intake"]["ports"] == ["127.0.0.1:8000:8000"]  # loopback only
    declared = set(compose["secrets"])
    for svc in services.values():
        assert set(svc.get("secrets", [])) <= declared
    for secret in compose["secrets"].values():
        assert secret["file"].startswith("./compose/secrets/")  # generated, git-ignored
    assert (DEPLOY / "compose" / "init-roles.sh").exists() and (
        DEPLOY / "compose" / "make-secrets.sh"
    ).exists()


def test_dockerfile_builds_a_non_root_refnet_image() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    froms = [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")]
    assert froms and all(f == "python:3.11-slim" for f in froms)
    users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert 'ENTRYPOINT ["refnet"]' in text and 'CMD ["serve", "intake"]' in text
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), f"Dockerfile copies {src}, which does not exist"


def test_nats_requires_a_user_per_service_in_every_deployment() -> None:
    """deploy/'s NATS has the embedded server's users and permissions (shared.bus), and every service logs
    in as its own user with only its own password mounted."""
    from shared.bus import nats_authorization, nats_permissions

    conf = (DEPLOY / "nats" / "refnet-auth.conf").read_text()
    expected = nats_authorization(
        {u: f"$REFNET_NATS_{u.upper()}_PASSWORD" for u in ("intake", "routing", "notify")}
    )
    assert conf.endswith(expected), "deploy/nats/refnet-auth.conf drifted from shared.bus.nats_authorization"
    values = yaml.safe_load((DEPLOY / "nats" / "values.yaml").read_text())
    users = {u["user"]: u for u in values["config"]["merge"]["authorization"]["users"]}
    assert set(users) == {"intake", "routing", "notify"}
    for name, user in users.items():
        assert user["permissions"] == nats_permissions(name)
        assert user["password"] == f"<< $REFNET_NATS_{name.upper()}_PASSWORD >>"
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert "/etc/nats/refnet-auth.conf" in compose["services"]["nats"]["command"]
    deployments = of_kind("Deployment")
    for name in ("intake", "routing", "notify"):
        env = compose["services"][name]["environment"]
        assert env["REFNET_NATS_USER"] == name and env["REFNET_NATS_PASSWORD_FILE"].endswith(
            f"nats_{name}_password"
        )
        (container,) = [c for c in _containers(deployments[name]) if c["name"] == name]
        k8s_env = {e["name"]: e.get("value") for e in container["env"]}
        assert k8s_env["REFNET_NATS_USER"] == name
        volumes = {v["name"]: v for v in deployments[name]["spec"]["template"]["spec"]["volumes"]}
        assert volumes["nats-password"]["secret"]["items"] == [{"key": name, "path": "password"}]


def test_the_nats_auth_config_is_valid_for_nats_server() -> None:
    from refnet_dev.embedded import nats_server_binary

    env = {f"REFNET_NATS_{u}_PASSWORD": "x" * 24 for u in ("INTAKE", "ROUTING", "NOTIFY")}
    out = subprocess.run(
        [nats_server_binary(), "-c", str(DEPLOY / "nats" / "refnet-auth.conf"), "-t"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**env, "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr or out.stdout
