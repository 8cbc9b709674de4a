"""deploy/kubernetes/: every manifest is valid against the Kubernetes API schemas (offline,
strict: an unknown field is an error), and what the manifests say agrees with the code: the
config is a valid entrasync config, the probes and ports use `daemon.listen` and paths the
health server answers, the arguments are a valid command line, and the workload identity
wiring names one identity throughout."""

from __future__ import annotations

import re
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from entrasync.cli import main
from entrasync.config import Config, EntraConfig, load_config, parse_listen
from entrasync.daemon.health import HealthServer
from entrasync.graph.credentials import settings_from_config
from entrasync.graph.settings import FederatedToken

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
# The oldest Kubernetes the manifests are for (unhealthyPodEvictionPolicy is GA in 1.31), and
# the newest the installed kubernetes-validate knows.
VERSIONS = ("1.31", kubernetes_validate.latest_version())
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule"}


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def _manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def _one(kind: str) -> dict[str, Any]:
    found = [d for p in _manifest_files() for d in _documents(p) if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def _pod() -> dict[str, Any]:
    spec: dict[str, Any] = _one("Deployment")["spec"]["template"]
    return spec


def _container() -> dict[str, Any]:
    containers = _pod()["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _toml_text() -> str:
    text: str = _one("ConfigMap")["data"]["entrasync.toml"]
    return text


def _config(tmp_path: Path) -> Config:
    """The ConfigMap's file through entrasync's own loader (an unknown key or a bad value
    fails). `entra.auth` is kept out only while this entrasync does not know the key yet."""
    text = _toml_text()
    assert tomllib.loads(text)["entra"]["auth"] == "workload_identity"
    if "auth" not in EntraConfig.model_fields:
        text = re.sub(r'(?m)^auth = "workload_identity"\n', "", text)
    path = tmp_path / "entrasync.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def _container_port(name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in _container()["ports"]}
    return int(ports[name])


# ---- schemas ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_against_the_kubernetes_schemas(version: str) -> None:
    validated = []
    for path in _manifest_files():
        for doc in _documents(path):
            if doc["kind"] in CUSTOM_KINDS:
                continue  # CRDs: checked in test_custom_resources_are_well_formed
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{path.relative_to(ROOT)} ({doc['kind']}): {exc.message}")
            validated.append(doc["kind"])
    assert sorted(validated) == sorted(
        [
            "ConfigMap",
            "Deployment",
            "Namespace",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Secret",
            "Secret",
            "Service",
            "ServiceAccount",
        ]
    )


def test_kubernetes_validate_catches_a_misspelt_field() -> None:
    deployment = _one("Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRoot"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[0], strict=True)


def test_kustomizations_name_files_that_exist_and_every_manifest() -> None:
    listed: set[Path] = set()
    for kustomization in (ROOT / "deploy").rglob("kustomization.yaml"):
        spec = _documents(kustomization)[0]
        for resource in spec.get("resources", []):
            target = (kustomization.parent / resource).resolve()
            assert target.exists(), f"{kustomization.relative_to(ROOT)}: {resource} is missing"
            listed.add(target)
        for generator in spec.get("configMapGenerator", []):
            for file in generator.get("files", []):
                assert (kustomization.parent / file).exists(), f"{kustomization}: {file}"
    examples = {p for p in _manifest_files() if p.name.endswith(".example.yaml")}
    unlisted = set(_manifest_files()) - examples - listed
    assert not unlisted, f"manifests in no kustomization.yaml: {sorted(map(str, unlisted))}"
    assert ROOT / "deploy" / "prometheus" in listed  # the alerts come with monitoring/


def test_custom_resources_are_well_formed() -> None:
    monitor = _one("ServiceMonitor")
    service = _one("Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics"

    rule = _documents(ROOT / "deploy" / "prometheus" / "alerts.yaml")[0]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["kind"] == "PrometheusRule"
    rules = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    assert rules
    for r in rules:
        assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}, r
        assert (
            r["alert"] and r["expr"] and r["labels"]["severity"] in {"critical", "warning", "info"}
        )


# ---- agreement with the code ----------------------------------------------------------


def test_the_config_map_is_a_valid_config_for_replicas_sharing_a_store(tmp_path: Path) -> None:
    config = _config(tmp_path)
    # Two replicas elect a leader on PostgreSQL; SQLite stores live on one host.
    assert _one("Deployment")["spec"]["replicas"] == 2
    assert config.store.url.startswith("postgresql+psycopg://")
    host, port = parse_listen(config.daemon.listen)
    assert host == "0.0.0.0"  # noqa: S104 - the kubelet and Prometheus connect to the pod IP
    assert port == _container_port("metrics")
    assert config.logging.format == "json"
    # SIGTERM: the daemon stops within stop_timeout, inside the pod's grace period.
    grace = _pod()["spec"]["terminationGracePeriodSeconds"]
    assert config.daemon.stop_timeout.total_seconds() < grace


def test_the_config_is_mounted_where_the_arguments_say() -> None:
    container = _container()
    args = container["args"]
    assert "command" not in container  # the image's entry point, entrasync, runs
    config_path = args[args.index("--config") + 1]
    config_volume = next(v for v in _pod()["spec"]["volumes"] if "configMap" in v)
    mount = next(m for m in container["volumeMounts"] if m["name"] == config_volume["name"])
    items = config_volume["configMap"]["items"]
    assert config_volume["configMap"]["name"] == _one("ConfigMap")["metadata"]["name"]
    assert [i["key"] for i in items] == ["entrasync.toml"]
    assert config_path == f"{mount['mountPath']}/{items[0]['path']}"
    assert config_path == "/etc/entrasync/entrasync.toml"  # the image's ENTRASYNC_CONFIG
    assert "ENTRASYNC_CONFIG=/etc/entrasync/entrasync.toml" in _dockerfile()


def test_the_arguments_are_a_valid_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    """entrasync's own parser takes them (`--help` at the end parses everything before it and
    stops: an unknown command or option is exit 2), and they run the daemon."""
    args = _container()["args"]
    assert main([*args, "--help"]) == 0
    assert "Usage: entrasync run" in capsys.readouterr().out
    assert main([*args, "--no-such-option", "--help"]) == 2  # the check can fail


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback http
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize("health", [200, 503])
def test_probes_use_the_listen_port_and_paths_the_health_server_answers(
    tmp_path: Path, health: int
) -> None:
    """The real health server: readiness and startup follow /healthz (200 or 503); liveness
    answers 200 whatever /healthz says, so a stale deployment (Graph or the database down)
    is never restarted, standbys included."""
    port = parse_listen(_config(tmp_path).daemon.listen)[1]
    server = HealthServer(
        "127.0.0.1:0",
        health=lambda: (health, {"status": "ok" if health == 200 else "stale"}),
        metrics=lambda: (b"entrasync_leader 1.0\n", "text/plain"),
    )
    server.start()
    try:
        base = f"http://{server.address}"
        assert _get(f"{base}/no-such-path") == 404
        container = _container()
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            get = container[probe]["httpGet"]
            assert _container_port(get["port"]) == port, probe
            expected = 200 if probe == "livenessProbe" else health
            assert _get(base + get["path"]) == expected, probe
        assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    finally:
        server.stop()


def test_the_service_and_the_network_policy_reach_the_listen_port(tmp_path: Path) -> None:
    port = parse_listen(_config(tmp_path).daemon.listen)[1]
    service = _one("Service")
    (service_port,) = service["spec"]["ports"]
    assert service_port["port"] == port
    assert _container_port(service_port["targetPort"]) == port
    assert service["spec"]["publishNotReadyAddresses"] is True  # a stale pod is still scraped
    policy = _one("NetworkPolicy")["spec"]
    ingress_ports = {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
    assert ingress_ports == {port}
    egress_ports = {p["port"] for rule in policy["egress"] for p in rule["ports"]}
    # DNS, PostgreSQL, HTTPS (Entra, Graph, an https collector), syslog, SMTP.
    assert {53, 5432, 443, 514, 6514, 25, 587} <= egress_ports
    config = _config(tmp_path)
    assert (re.search(r":(\d+)/", config.store.url) or pytest.fail("no port")).group(1) == "5432"
    assert config.notify.smtp_port in egress_ports


def test_selectors_pick_the_deployment_pods() -> None:
    labels = _pod()["metadata"]["labels"]
    selectors = {
        "Deployment": _one("Deployment")["spec"]["selector"]["matchLabels"],
        "Service": _one("Service")["spec"]["selector"],
        "PodDisruptionBudget": _one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        "NetworkPolicy": _one("NetworkPolicy")["spec"]["podSelector"]["matchLabels"],
    }
    for kind, selector in selectors.items():
        assert selector and selector.items() <= labels.items(), kind
    assert _one("PodDisruptionBudget")["spec"]["minAvailable"] == 1


def _dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text(encoding="utf-8")


def test_the_container_is_hardened_as_the_image_expects() -> None:
    pod = _pod()["spec"]
    context = _container()["securityContext"]
    user = re.search(r"(?m)^USER (\d+):(\d+)$", _dockerfile())
    assert user is not None
    assert (context["runAsUser"], context["runAsGroup"]) == (int(user[1]), int(user[2]))
    assert pod["securityContext"]["fsGroup"] == int(user[2])  # reads the mounted secret
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    # The only writable places: /tmp (emptyDir), nothing else.
    writable = [m["mountPath"] for m in _container()["volumeMounts"] if not m.get("readOnly")]
    assert writable == ["/tmp"]


def test_workload_identity_names_one_identity_throughout(tmp_path: Path) -> None:
    """The ConfigMap, with what the webhook injects into the pod, gives entrasync a federated
    credential for the identity the ServiceAccount names (and only that one)."""
    account = _one("ServiceAccount")
    client_id = account["metadata"]["annotations"]["azure.workload.identity/client-id"]
    pod = _pod()
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert pod["spec"]["serviceAccountName"] == account["metadata"]["name"]
    config = _config(tmp_path)
    assert config.entra.client_id in ("", client_id)  # named once: the annotation

    if "auth" in EntraConfig.model_fields:  # this entrasync signs in with workload identity
        token = tmp_path / "azure-identity-token"
        token.write_text("eyJ.projected.token\n", encoding="utf-8")
        webhook = {
            "AZURE_CLIENT_ID": client_id,
            "AZURE_TENANT_ID": "8f3c2a71-5b0e-4d9a-9c1f-2e6b7d4a0c95",
            "AZURE_FEDERATED_TOKEN_FILE": str(token),
            "AZURE_AUTHORITY_HOST": "https://login.microsoftonline.com/",
        }
        settings = settings_from_config(config.entra, webhook)
        assert settings.client_id == client_id
        assert isinstance(settings.credential, FederatedToken)
        assert settings.credential.token_file == token

    namespace = _documents(K8S / "kustomization.yaml")[0]["namespace"]
    assert _one("Namespace")["metadata"]["name"] == namespace
    subject = f"system:serviceaccount:{namespace}:{account['metadata']['name']}"
    guide = (ROOT / "docs" / "kubernetes.md").read_text(encoding="utf-8")
    assert subject in guide  # the federated credential's subject


def test_credential_files_in_the_config_are_under_the_secret_mount() -> None:
    container = _container()
    secret_volume = next(v for v in _pod()["spec"]["volumes"] if "secret" in v)
    assert secret_volume["secret"]["optional"] is True  # workload identity needs none
    mount = next(m for m in container["volumeMounts"] if m["name"] == secret_volume["name"])
    # The commented alternatives (auth = "secret" / "certificate") too.
    paths = re.findall(r'(?:client_secret_file|certificate_file) = "([^"]+)"', _toml_text())
    assert paths
    for path in paths:
        assert path.startswith(mount["mountPath"] + "/"), path
    secrets = [
        d
        for p in _manifest_files()
        for d in _documents(p)
        if d["kind"] == "Secret" and d["metadata"]["name"] == secret_volume["secret"]["secretName"]
    ]
    (credentials,) = secrets
    assert {Path(p).name for p in paths} <= set(credentials["stringData"]) | {"certificate.pem"}
    # The PostgreSQL password: libpq's PGPASSWORD, from the Secret the guide creates.
    env = {e["name"]: e for e in container["env"]}
    ref = env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]
    (postgres,) = [
        d
        for d in _documents(K8S / "secret-postgres.example.yaml")
        if d["metadata"]["name"] == ref["name"]
    ]
    assert ref["key"] in postgres["stringData"]
    guide = (ROOT / "docs" / "kubernetes.md").read_text(encoding="utf-8")
    assert f"create secret generic {ref['name']} --from-file={ref['key']}=" in guide
