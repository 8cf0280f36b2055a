"""A multi-node Ray cluster on this machine, in a process of its own, driven over stdin/stdout.

``ray.cluster_utils.Cluster`` starts a head and worker nodes as child processes of whoever
builds it. Building it here, in a separate process, keeps it apart from the test session's
embedded Ray (RAY_NOTES: never two clusters in one test process), lets the test remove nodes
while a job runs, and ends every node by process id when this process is told to quit (never
``ray stop``, which would end every Ray on the machine, other people's included).

Protocol: one JSON object per line. On start it prints ``{"gcs", "dashboard", "head", "workers"}``;
then it answers ``{"cmd": "nodes"}`` (live worker node ids), ``{"cmd": "remove", "node_id": ID}``
(ungraceful: its processes are killed), ``{"cmd": "add", "num_cpus": N}`` and ``{"cmd": "quit"}``.
"""

from __future__ import annotations

import json
import socket
import sys


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    spec = json.loads(sys.argv[1])  # {"workers": [cpus, ...], "temp_dir": DIR}
    import ray._common.utils
    import ray._private.utils
    from ray.cluster_utils import Cluster

    # Cluster records its address in /tmp/ray/ray_current_cluster for a later bare ray.init(),
    # and deletes that file on shutdown: both would touch other Ray users of this machine.
    # Keep it in this cluster's own temp dir instead, which is where the job supervisor looks
    # for the address it hands a job's driver (without it, the driver may join ANOTHER cluster
    # found by scanning the machine's processes).
    write, reset = ray._private.utils.write_ray_address, ray._common.utils.reset_ray_address
    ray._private.utils.write_ray_address = lambda address, temp_dir=None: write(
        address, spec["temp_dir"]
    )
    ray._common.utils.reset_ray_address = lambda temp_dir=None: reset(spec["temp_dir"])

    head_args = {
        "num_cpus": 0,
        "include_dashboard": True,
        "dashboard_host": "127.0.0.1",
        "dashboard_port": free_port(),
        "gcs_server_port": free_port(),
        "dashboard_agent_listen_port": free_port(),
        "temp_dir": spec["temp_dir"],
        "object_store_memory": 200 * 1024 * 1024,
    }
    cluster = Cluster(initialize_head=True, head_node_args=head_args)
    workers, removed = {}, 0

    def add(num_cpus: int) -> str:
        # A temp dir per node, as on separate machines. Sharing the head's would share its
        # session's runtime_resources/: a node that drops a job's working_dir package then
        # deletes the directory the job's driver runs in, on the head.
        temp_dir = f"{spec['temp_dir']}/node{len(workers) + removed}"
        node = cluster.add_node(
            num_cpus=num_cpus, object_store_memory=150 * 1024 * 1024, temp_dir=temp_dir
        )
        write(cluster.address, temp_dir)  # where Ray's helpers on that node look for the GCS
        workers[node.node_id] = node
        return node.node_id

    for cpus in spec["workers"]:
        add(cpus)
    cluster.wait_for_nodes()
    reply(
        {
            "gcs": cluster.address,
            "dashboard": f"http://{cluster.webui_url}",
            "head": cluster.head_node.node_id,
            "workers": list(workers),
        }
    )
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "nodes":
            reply({"workers": list(workers)})
        elif command["cmd"] == "remove":
            node = workers.pop(command["node_id"])
            cluster.remove_node(node, allow_graceful=False)
            removed += 1
            reply({"removed": command["node_id"]})
        elif command["cmd"] == "add":
            reply({"added": add(command["num_cpus"])})
        elif command["cmd"] == "quit":
            break
    cluster.shutdown()
    reply({"stopped": True})


def reply(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
