"""Storage locations (local paths and S3 URIs on a local moto server), keys read from storage,
and how many trials a cluster runs side by side. No Ray cluster is started here."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet  # noqa: F401  (pa.parquet)
import pytest

from lie_ray.errors import LieRayError
from lie_ray.infra import storage
from lie_ray.keys import generate_key, key_location, load_key, save_key
from lie_ray.training import capacity
from lie_ray.training.settings import get_preset
from tests.s3 import CREDENTIALS, moto_bucket


@pytest.fixture(scope="module")
def bucket():
    with moto_bucket() as made:
        yield made


@pytest.fixture(autouse=True)
def aws_env(monkeypatch):
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)


def test_join_keeps_uri_options_at_the_end(tmp_path):
    uri = "s3://b/p?region=us-east-1&endpoint_override=http://127.0.0.1:9"
    assert (
        storage.join(uri, "runs", "Plain")
        == "s3://b/p/runs/Plain?region=us-east-1&endpoint_override=http://127.0.0.1:9"
    )
    assert storage.join("s3://b/", "x") == "s3://b/x"
    assert storage.join(tmp_path, "a", "b") == str(tmp_path / "a" / "b")


def test_to_location_turns_rays_paths_back_into_uris(bucket):
    base = bucket.uri("study/runs")
    assert storage.to_location(
        base, f"{bucket.name}/study/runs/Plain/checkpoint_1"
    ) == storage.join(base, "Plain/checkpoint_1")
    assert storage.to_location("/local/runs", "/local/runs/x") == "/local/runs/x"
    with pytest.raises(LieRayError, match="not under the storage"):
        storage.to_location(base, "other-bucket/x")


def test_check_uri_refuses_credentials_and_makes_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert storage.check_uri("rel/dir") == str(tmp_path / "rel" / "dir")
    with pytest.raises(
        LieRayError,
        match=r"must not carry credentials \(access_key, "
        r"secret_key\)",
    ) as err:
        storage.check_uri("s3://b/p?region=us-east-1&access_key=A&secret_key=S")
    assert "\n" not in str(err.value) and "=S" not in str(err.value)
    with pytest.raises(LieRayError, match="not a usable location"):
        storage.check_uri("nosuchscheme://x/y")


def test_tables_and_bytes_round_trip_through_s3(bucket):
    table = pa.table({"id": [3, 1, 2], "name": ["c", "a", "b"]})
    where = storage.join(bucket.uri("t"), "dir", "part.parquet")
    assert not storage.exists(where)
    storage.write_table(table.replace_schema_metadata({b"k": b"v"}), where)
    assert storage.exists(where)
    assert storage.read_table(where).equals(table.replace_schema_metadata({b"k": b"v"}))
    assert storage.read_schema(where).metadata == {b"k": b"v"}
    assert bucket.keys("t/") == ["t/dir/part.parquet"]
    storage.delete(storage.join(bucket.uri("t"), "dir"))
    assert bucket.keys("t/dir") == []


def test_a_key_in_s3_loads_like_its_file(bucket, tmp_path):
    key = generate_key(4)
    save_key(key, tmp_path / "master.json")
    uri = bucket.uri("keys/master.json")
    storage.write_bytes(uri, (tmp_path / "master.json").read_bytes())
    assert load_key(uri, block_size=4).fingerprint == key.fingerprint
    assert key_location(uri) == uri  # a reference, passed on as given
    with pytest.raises(LieRayError, match="was made for block size 4"):
        load_key(uri, block_size=8)
    missing = bucket.uri("keys/none.json")
    with pytest.raises(LieRayError, match=r"^key s3://.*none\.json.* not found"):
        load_key(missing)


# ---------------------------------------------------------------- trials side by side


def fake_cluster(
    monkeypatch, resources: dict, ceiling: dict | None = None, autoscaler: bool = False
) -> None:
    monkeypatch.setattr(capacity.ray, "cluster_resources", lambda: resources)
    monkeypatch.setattr(
        capacity.ray._private.state.state, "get_max_resources_from_cluster_config", lambda: ceiling
    )
    monkeypatch.setattr(capacity, "autoscaler_running", lambda: autoscaler)


def test_trials_run_side_by_side_as_the_cluster_allows(monkeypatch):
    smoke = get_preset("smoke").replace(max_concurrent_trials=None)  # 2.25 CPUs a trial
    fake_cluster(monkeypatch, {"CPU": 12.0})
    assert capacity.concurrent_trials(smoke, False, trials=5) == 5
    assert capacity.concurrent_trials(smoke, False, trials=5, cap=3) == 3
    fake_cluster(monkeypatch, {"CPU": 6.0})
    assert capacity.concurrent_trials(smoke, False, trials=5) == 2
    # an autoscaling cluster at zero workers: what it may grow to counts
    fake_cluster(monkeypatch, {"CPU": 0.0}, ceiling={"CPU": 9})
    assert capacity.concurrent_trials(smoke, False, trials=5) == 4
    # GPUs: each trial asks for one per worker, and two CPUs of Ray Data per GPU to feed it
    paper = get_preset("paper").replace(num_workers=2)
    assert capacity.trial_needs(paper, True) == capacity.TrialNeeds(cpus=4.25, gpus=2, data_cpus=4)
    assert capacity.trial_needs(paper, False).data_cpus == 1
    fake_cluster(monkeypatch, {"CPU": 64.0, "GPU": 4.0})
    assert capacity.concurrent_trials(paper, True, trials=5) == 2
    fake_cluster(monkeypatch, {"CPU": 8.0, "GPU": 4.0})  # 4.25 CPUs a trial: only one fits
    assert capacity.concurrent_trials(paper, True, trials=5) == 1


def test_a_cluster_too_small_for_one_trial_fails_at_once(monkeypatch):
    smoke = get_preset("smoke")
    fake_cluster(monkeypatch, {"CPU": 2.0})  # what a default 'ray start --head' has here
    with pytest.raises(LieRayError) as err:
        capacity.concurrent_trials(smoke, False, trials=5)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(
        "the Ray cluster has 2 CPUs, but one training trial needs 2.25 "
        "CPUs (0.25 trial driver + 1 CPU per Train worker x 1 + 1 for "
        "Ray Data)"
    )
    assert "ray start --head --num-cpus=4" in message
    fake_cluster(monkeypatch, {"CPU": 16.0})
    with pytest.raises(LieRayError, match=r"has 16 CPUs and 0 GPUs.*add nodes with GPUs"):
        capacity.concurrent_trials(get_preset("paper"), True, trials=5)
    # an autoscaler whose reach Ray does not report: trust it, up to the cap
    fake_cluster(monkeypatch, {"CPU": 0.0}, autoscaler=True)
    assert capacity.concurrent_trials(smoke, False, trials=5, cap=3) == 3


# ---------------------------------------------------------------- the command line, before Ray


@pytest.mark.parametrize("command", ["train", "sweep", "evaluate"])
def test_commands_refuse_credentials_in_a_storage_uri_before_ray(
    command, cifar_dir, tmp_path, monkeypatch
):
    from typer.testing import CliRunner

    import lie_ray.infra.session
    from lie_ray.app.cli import app

    monkeypatch.setattr(
        lie_ray.infra.session, "ray_session", lambda *a, **k: pytest.fail("Ray started")
    )
    runs = tmp_path / "runs"
    runs.mkdir()
    pa.parquet.write_table(
        pa.table({"scenario": ["Plain"], "encrypted": [False], "key_policy": [""]}),
        runs / "training.parquet",
    )
    uri = "s3://b/p?region=us-east-1&secret_key=S3CR3T"
    args = {
        "train": ["train", "--scenarios", "Plain"],
        "sweep": ["sweep", "--scenarios", "Plain"],
        "evaluate": ["evaluate", "--runs", str(runs)],
    }[command]
    result = CliRunner().invoke(
        app, [*args, "--data", str(cifar_dir), "--out", str(tmp_path / "out"), "--storage", uri]
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: --storage must not carry credentials (secret_key)")
    assert result.stderr.count("\n") == 1 and "S3CR3T" not in result.output
    assert not (tmp_path / "out").exists()


def test_the_sweep_refuses_credentials_in_a_key_uri(cifar_dir, tmp_path):
    from typer.testing import CliRunner

    from lie_ray.app.cli import app

    result = CliRunner().invoke(
        app,
        [
            "sweep",
            "--data",
            str(cifar_dir),
            "--out",
            str(tmp_path / "out"),
            "--key",
            "s3://b/k.json?region=us-east-1&access_key=AK",
        ],
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --key must not carry credentials (access_key)")
