"""jobs/kubernetes/rayjob.yaml, checked offline against KubeRay's own RayJob CRD (v1.5.1, kept in
tests/schemas/ with its source), and against what lie_ray needs of it: no cluster, no network.

A CRD's OpenAPI schema alone lets unknown fields through (the API server prunes them, silently:
a misspelt ``shutdownAfterJobFinish`` would leave a GPU cluster running after the job), so the
schema is made strict here as ``kubectl apply --validate=strict`` is: every object that lists
its properties takes no others. The CRD's three CEL rules (``x-kubernetes-validations``) are
the API server's to run; they are left out.
"""

from __future__ import annotations

import copy
import gzip
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import typer
import yaml

from lie_ray.app import cli

REPO = Path(__file__).resolve().parents[1]
KUBERNETES = REPO / "jobs" / "kubernetes"
RAYJOB = KUBERNETES / "rayjob.yaml"
CRD = Path(__file__).parent / "schemas" / "kuberay-v1.5.1" / "ray.io_rayjobs.yaml.gz"


def strict(node):
    """The OpenAPI schema with unknown fields refused: ``additionalProperties: false`` on
    every object schema that lists ``properties`` (maps, which declare ``additionalProperties``,
    and free-form objects, which list nothing, stay open)."""
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: strict(value) for key, value in node.items()}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


@pytest.fixture(scope="module")
def schema() -> dict:
    # libyaml's loader where PyYAML has it: the CRD is 1.3 MB of YAML
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load(gzip.decompress(CRD.read_bytes()), Loader=loader)
    assert crd["spec"]["names"]["kind"] == "RayJob"
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return strict(v1["schema"]["openAPIV3Schema"])


@pytest.fixture()
def rayjob() -> dict:
    return yaml.safe_load(RAYJOB.read_text())


def validate(manifest: dict, schema: dict) -> None:
    jsonschema.Draft7Validator(schema).validate(manifest)


def test_rayjob_matches_kuberays_crd(rayjob, schema):
    assert (rayjob["apiVersion"], rayjob["kind"]) == ("ray.io/v1", "RayJob")
    validate(rayjob, schema)


def spec(manifest):
    return manifest["spec"]


def cluster(manifest):
    return manifest["spec"]["rayClusterSpec"]


def gpu_group(manifest):
    return manifest["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]


def head_container(manifest):
    return cluster(manifest)["headGroupSpec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize(
    "where, right, misspelt",
    [
        (spec, "shutdownAfterJobFinishes", "shutdownAfterJobFinish"),  # the cluster stays up
        (cluster, "enableInTreeAutoscaling", "enableInTreeAutoScaling"),
        (gpu_group, "minReplicas", "minReplica"),
        (head_container, "resources", "resource"),
    ],
    ids=["spec", "rayClusterSpec", "workerGroupSpec", "container"],
)
def test_a_misspelt_field_is_refused(rayjob, schema, where, right, misspelt):
    broken = copy.deepcopy(rayjob)
    part = where(broken)
    part[misspelt] = part.pop(right)
    with pytest.raises(jsonschema.ValidationError, match=re.escape(repr(misspelt))):
        validate(broken, schema)


def test_a_value_of_the_wrong_kind_is_refused(rayjob, schema):
    broken = copy.deepcopy(rayjob)
    gpu_group(broken)["maxReplicas"] = "four"
    with pytest.raises(jsonschema.ValidationError, match="'four' is not of type 'integer'"):
        validate(broken, schema)
    broken = copy.deepcopy(rayjob)
    cluster(broken)["authOptions"]["mode"] = "password"
    with pytest.raises(jsonschema.ValidationError, match="'password' is not one of"):
        validate(broken, schema)


def entrypoint_options(manifest: dict) -> dict[str, object]:
    """The entrypoint as ``python -m lie_ray.sweep`` parses it (lie_ray's own click command,
    not run): a misspelt or removed option fails here."""
    argv = shlex.split(manifest["spec"]["entrypoint"])
    assert argv[:3] == ["python", "-m", "lie_ray.sweep"]
    command = typer.main.get_command(cli.app).commands["sweep"]
    return command.make_context("python -m lie_ray.sweep", argv[3:]).params


def pods(manifest: dict) -> dict[str, dict]:
    """Pod spec by group: the head's and each worker group's."""
    groups = {"head": cluster(manifest)["headGroupSpec"]}
    groups |= {g["groupName"]: g for g in cluster(manifest)["workerGroupSpecs"]}
    return {name: group["template"]["spec"] for name, group in groups.items()}


def mounted(pod: dict, path: str, writable: bool = False) -> bool:
    """Whether ``path`` lies on a volume of ``pod``'s Ray container (writable, if asked)."""
    mounts = pod["containers"][0].get("volumeMounts", [])
    return any(
        Path(path).is_relative_to(m["mountPath"]) and not (writable and m.get("readOnly"))
        for m in mounts
    )


def test_the_sweep_runs_on_gpu_workers_from_zero(rayjob):
    options = entrypoint_options(rayjob)
    # the autoscaler starts GPU workers only for work that asks for a GPU: 'auto' sees none
    assert options["gpu"] == "yes"
    assert str(options["storage"]).startswith("s3://")  # checkpoints every node reaches
    group = gpu_group(rayjob)
    assert group["minReplicas"] == 0 and group["replicas"] == 0 and group["maxReplicas"] > 0
    assert cluster(rayjob)["enableInTreeAutoscaling"] is True
    worker = pods(rayjob)["gpu"]["containers"][0]["resources"]
    assert int(worker["limits"]["nvidia.com/gpu"]) == 1
    head = head_container(rayjob)["resources"]
    assert not any("gpu" in name for part in head.values() for name in part)


def test_the_cluster_is_authenticated_and_deleted_after_the_job(rayjob):
    assert cluster(rayjob)["authOptions"]["mode"] == "token"
    assert spec(rayjob)["shutdownAfterJobFinishes"] is True


def test_every_pod_has_the_key_and_the_data_where_the_entrypoint_names_them(rayjob):
    options = entrypoint_options(rayjob)
    key, data, out = str(options["key"]), str(options["data"]), str(options["out"])
    for name, pod in pods(rayjob).items():
        # the key file the actors open: written by the init container, mode 0600 (lie_ray
        # refuses a group-readable key, which is how Kubernetes mounts a Secret)
        (copy_key,) = pod["initContainers"]
        assert copy_key["command"][:3] == ["install", "-m", "600"], name
        assert copy_key["command"][-1] == key, name
        assert mounted(pod, key) and mounted(pod, data), name
        secrets = [v for v in pod["volumes"] if "secret" in v]
        assert [v["secret"]["secretName"] for v in secrets] == ["lie-ray-master-key"], name
        # no secret in an environment variable of the pod (only whole Secrets by reference)
        for container in pod["containers"] + pod["initContainers"]:
            assert all("value" not in v for v in container.get("env", [])), name
    assert mounted(pods(rayjob)["head"], out, writable=True)  # tables outlive the cluster
    assert "runtimeEnvYAML" not in spec(rayjob)  # shown by 'ray job list': nothing secret


def test_the_image_has_the_ray_and_torch_that_cluster_yaml_pins(rayjob):
    dockerfile = (KUBERNETES / "Dockerfile").read_text()
    base = re.search(r"^FROM rayproject/ray:(\S+)-py311-gpu$", dockerfile, re.M)
    setup = "\n".join(yaml.safe_load((REPO / "cluster.yaml").read_text())["setup_commands"])
    pinned_ray = re.search(r"ray\[[^]]*\]==([\d.]+)", setup).group(1)
    pinned_torch = re.search(r"torch==([\d.]+) torchvision==([\d.]+)", setup).groups()
    assert base and base.group(1) == pinned_ray == cluster(rayjob)["rayVersion"]
    assert re.search(r"torch==([\d.]+) torchvision==([\d.]+)", dockerfile).groups() == (
        pinned_torch
    )
    images = {c["image"] for pod in pods(rayjob).values() for c in pod["containers"]}
    images |= {c["image"] for pod in pods(rayjob).values() for c in pod["initContainers"]}
    assert len(images) == 1  # the one image the Dockerfile builds, everywhere
