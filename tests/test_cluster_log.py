"""OUT/cluster.parquet: the cluster sampled over a sweep, and its plot in the report."""

from __future__ import annotations

import pyarrow.parquet as pq
import ray

from lie_ray.infra.atomic import write_parquet
from lie_ray.infra.cluster_log import ClusterRecorder
from lie_ray.report.cluster import cluster_section, phase_spans


def test_samples_record_nodes_and_resources_in_use(monkeypatch, tmp_path):
    views = iter(
        [({"CPU": 4.0}, {"CPU": 4.0}, 1), ({"CPU": 8.0, "GPU": 2.0}, {"CPU": 5.75, "GPU": 1.0}, 3)]
    )
    state = {}

    def advance():
        state["total"], state["free"], state["nodes"] = next(views)

    monkeypatch.setattr(
        ray, "nodes", lambda: [{"Alive": True}] * state["nodes"] + [{"Alive": False}]
    )
    monkeypatch.setattr(ray, "cluster_resources", lambda: state["total"])
    monkeypatch.setattr(ray, "available_resources", lambda: state["free"])
    recorder = ClusterRecorder()
    for phase in ("encryption", "training"):
        advance()
        recorder.phase = phase
        recorder.sample()
    rows = recorder.table().to_pylist()
    assert [
        (
            r["phase"],
            r["alive_nodes"],
            r["cpus_total"],
            r["cpus_used"],
            r["gpus_total"],
            r["gpus_used"],
        )
        for r in rows
    ] == [("encryption", 1, 4.0, 0.0, 0.0, 0.0), ("training", 3, 8.0, 2.25, 2.0, 1.0)]
    write_parquet(recorder.table(), tmp_path / "cluster.parquet")
    assert pq.read_table(tmp_path / "cluster.parquet").num_rows == 2
    section = cluster_section(tmp_path)
    assert "![cluster](cluster.png)" in section and "Peak: 3 nodes, 2.25 CPUs in use" in section
    assert (tmp_path / "cluster.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_table_no_section(tmp_path):
    assert cluster_section(tmp_path) == ""
    assert not (tmp_path / "cluster.png").exists()


def test_phase_spans_cover_the_timeline():
    rows = [{"phase": p} for p in ("keys", "encryption", "encryption", "training")]
    assert phase_spans(rows, [0.0, 1.0, 2.0, 3.0]) == [
        ("keys", 0.0, 1.0),
        ("encryption", 1.0, 3.0),
        ("training", 3.0, 3.0),
    ]
