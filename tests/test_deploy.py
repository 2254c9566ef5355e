"""The deployment files, checked where they cannot run (no Docker engine, no Kubernetes here).

YAML parses; Kubernetes manifests validate against the API's schemas (kubernetes-validate,
offline); KEDA's resources name what exists; compose and the manifests set only settings
fairq has; .env.example lists every setting; the image's commands name entry points that
exist, and its entrypoint runs.
"""
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from app.settings import Settings
from tests.conftest import ROOT, clean_env

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.30"
#: What the image's entrypoint accepts as its first argument (besides any fairq subcommand).
ENTRYPOINT_COMMANDS = {"api", "worker", "scheduler", "migrate", "up"}
SETTINGS = {"FAIRQ_" + name.upper() for name in Settings.model_fields}


def documents(path: Path) -> list[dict]:
    with path.open() as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def manifests() -> list[tuple[Path, dict]]:
    return [(path, doc) for path in sorted(K8S.glob("*.yaml")) if path.name != "kustomization.yaml"
            for doc in documents(path)]


def fairq_env_names(text: str) -> set[str]:
    return set(re.findall(r"\b(FAIRQ_[A-Z0-9_]+)\b", text))


@pytest.mark.parametrize("path", sorted([*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml"),
                                         *(ROOT / ".github" / "workflows").glob("*.yml")]), ids=str)
def test_every_yaml_file_parses(path):
    assert documents(path), f"{path} is empty"


@pytest.mark.parametrize(("path", "doc"), [(p, d) for p, d in manifests() if not d["apiVersion"].startswith("keda.sh/")],
                         ids=lambda v: v.name if isinstance(v, Path) else v.get("kind", "") + "/" + v["metadata"]["name"])
def test_kubernetes_manifests_validate_against_the_api_schemas(path, doc):
    import kubernetes_validate

    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_kustomization_lists_every_manifest_but_the_secret_example():
    listed = set(documents(K8S / "kustomization.yaml")[0]["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secrets.example.yaml"}
    assert listed == present


def test_pods_reference_config_and_secrets_that_exist_and_run_entrypoint_commands():
    docs = [doc for _, doc in manifests()]
    names = {(doc["kind"], doc["metadata"]["name"]) for doc in docs}
    workloads = [doc for doc in docs if doc["kind"] in ("Deployment", "Job")]
    assert {doc["metadata"]["name"] for doc in workloads} == {"fairq-api", "fairq-worker", "fairq-scheduler",
                                                               "fairq-migrate"}
    for doc in workloads:
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            assert container["args"][0] in ENTRYPOINT_COMMANDS
            for source in container["envFrom"]:
                ref = source.get("configMapRef") or source.get("secretRef")
                kind = "ConfigMap" if "configMapRef" in source else "Secret"
                assert (kind, ref["name"]) in names, f"{doc['metadata']['name']} needs {kind} {ref['name']}"
    api = next(d for d in workloads if d["metadata"]["name"] == "fairq-api")["spec"]["template"]["spec"]
    assert api["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/readyz"
    worker = next(d for d in workloads if d["metadata"]["name"] == "fairq-worker")["spec"]["template"]["spec"]
    # the pod outlives the worker's own drain (--worker-shutdown-timeout 600000 ms)
    assert worker["terminationGracePeriodSeconds"] > 600
    assert "--worker-shutdown-timeout 600000" in (DEPLOY / "entrypoint.sh").read_text()
    # only the migration Job holds the owner's credentials
    owners = [d["metadata"]["name"] for d in workloads
              if any(s.get("secretRef", {}).get("name") == "fairq-migrate-secrets"
                     for c in d["spec"]["template"]["spec"]["containers"] for s in c["envFrom"])]
    assert owners == ["fairq-migrate"]


def test_keda_scales_the_worker_deployment_on_fairqs_backlog():
    docs = [doc for _, doc in manifests()]
    scaled = next(d for d in docs if d["kind"] == "ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    deployments = {d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"}
    assert scaled["spec"]["scaleTargetRef"]["name"] in deployments
    triggers = {t["type"]: t for t in scaled["spec"]["triggers"]}
    assert "fairq_jobs_queued" in triggers["prometheus"]["metadata"]["query"]
    from app.scheduling.kinds import JOBS_QUEUE

    assert triggers["rabbitmq"]["metadata"]["queueName"] == JOBS_QUEUE
    auths = {d["metadata"]["name"] for d in docs if d["kind"] == "TriggerAuthentication"}
    assert triggers["rabbitmq"]["authenticationRef"]["name"] in auths
    for doc in (d for d in docs if d["kind"] in ("ScaledObject", "TriggerAuthentication")):
        assert set(doc) >= {"apiVersion", "kind", "metadata", "spec"} and doc["metadata"]["name"]


def test_compose_runs_the_whole_stack_with_fairqs_own_commands():
    compose = documents(DEPLOY / "docker-compose.yml")[0]
    services = compose["services"]
    assert {"postgres", "rabbitmq", "redis", "minio", "migrate", "api", "worker", "scheduler", "prometheus",
            "grafana"} <= set(services)
    assert services["rabbitmq"]["image"].endswith("-management")
    for name in ("migrate", "api", "worker", "scheduler"):
        service = services[name]
        assert service["build"]["context"] == ".." and service["command"][0] in ENTRYPOINT_COMMANDS, name
    for name in ("api", "worker", "scheduler"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert "FAIRQ_DATABASE_OWNER_URL" not in services[name]["environment"], name
    assert "FAIRQ_DATABASE_OWNER_URL" in services["migrate"]["environment"]
    # every mounted file is in the repository
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), source


def test_prometheus_scrapes_the_api_and_every_worker_and_grafana_gets_the_dashboard():
    scrape = {job["job_name"]: job for job in documents(DEPLOY / "prometheus" / "prometheus.yml")[0]["scrape_configs"]}
    assert scrape["fairq-api"]["static_configs"][0]["targets"] == ["api:8000"]
    assert scrape["fairq-worker"]["dns_sd_configs"][0]["port"] == Settings.model_fields["metrics_port"].default
    compose = documents(DEPLOY / "docker-compose.yml")[0]["services"]
    assert compose["worker"]["environment"]["FAIRQ_METRICS_HOST"] == "0.0.0.0"
    assert any(v.startswith("./grafana/fairq.json:") for v in compose["grafana"]["volumes"])


def test_the_deployment_files_set_only_settings_fairq_has():
    texts = [(DEPLOY / "docker-compose.yml").read_text(), *(p.read_text() for p in K8S.glob("*.yaml")),
             (DEPLOY / "entrypoint.sh").read_text()]
    unknown = set().union(*(fairq_env_names(text) for text in texts)) - SETTINGS
    assert not unknown, f"not settings of fairq: {sorted(unknown)}"


def test_env_example_lists_every_setting():
    listed = fairq_env_names((DEPLOY / ".env.example").read_text())
    assert SETTINGS - listed == set(), "add these to deploy/.env.example"
    assert listed - SETTINGS == set(), "deploy/.env.example lists settings fairq does not have"


def test_the_image_names_entry_points_and_files_that_exist():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (?!--from)(?:--\S+ )*(\S+) ", dockerfile, flags=re.M):
        assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which does not exist"
    assert "USER fairq" in dockerfile and "/healthz" in dockerfile
    entrypoint = (DEPLOY / "entrypoint.sh").read_text()
    for program in re.findall(r"exec (\S+)", entrypoint):
        assert shutil.which(program), f"the entrypoint runs {program}, which is not installed"
    assert "app:create_app()" in entrypoint and "dramatiq app.tasks" in entrypoint and "periodiq app.tasks" in entrypoint
    assert subprocess.run(["sh", "-n", str(DEPLOY / "entrypoint.sh")]).returncode == 0


def test_the_entrypoint_migrates_and_runs_fairq_commands(tmp_path):
    env = clean_env(FAIRQ_DATA_DIR=str(tmp_path / "data"))
    migrated = subprocess.run(["sh", str(DEPLOY / "entrypoint.sh"), "migrate"], capture_output=True, text=True,
                              env=env, timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    assert (tmp_path / "data" / "fairq.db").is_file()
    listed = subprocess.run(["sh", str(DEPLOY / "entrypoint.sh"), "plugins"], capture_output=True, text=True,
                            env=env, timeout=120)
    assert listed.returncode == 0 and "UPI" in listed.stdout, listed.stderr


def test_the_ci_workflow_runs_the_readmes_test_command_with_the_three_servers():
    workflow = documents(ROOT / ".github" / "workflows" / "ci.yml")[0]
    test = workflow["jobs"]["test"]
    assert {"postgres", "rabbitmq", "redis"} <= set(test["services"])
    commands = " ".join(step.get("run", "") for step in test["steps"])
    readme = (ROOT / "README.md").read_text()
    command = "python3 -m pip install -r requirements-dev.txt && python3 -m pytest"
    assert command in readme and command in commands
    assert any("build-push-action" in step.get("uses", "") for step in workflow["jobs"]["image"]["steps"])


def test_the_wheel_carries_the_migrations_and_the_dashboard(tmp_path):
    """A non-editable install (the image's) needs migrations/ and the templates inside the wheel."""
    built = subprocess.run(["python3", "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    import zipfile

    wheel = next(tmp_path.glob("fairq-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {str(p.relative_to(ROOT)) for p in (ROOT / "migrations").rglob("*") if p.is_file()
                and "__pycache__" not in p.parts}
    expected |= {str(p.relative_to(ROOT)) for p in (ROOT / "app" / "web").rglob("*") if p.is_file()
                 and "__pycache__" not in p.parts}
    assert expected - names == set()
