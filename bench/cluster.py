"""Node loss on a multi-node Ray cluster on this machine: the issue-12 figures.

    python bench/cluster.py [--writes 1000] [--clients 4] [--redis redis://127.0.0.1:6379/0]

One cluster (layout: ``bench/_drills.py``): a head, a control node, two model nodes and
a spare. Prints:

- control-plane node lost while a thread adds model versions (each call with its
  idempotency key): seconds until the registry answered again, acknowledged writes lost
  and writes applied without an answer, out of at least ``--writes``;
- model node lost under ``--clients`` closed-loop HTTP clients: failed requests against
  the requests in flight at the kill, and seconds until both replicas ran again and
  answered.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console

from bench._drills import (
    CONTROL,
    MODEL,
    Cluster,
    Loader,
    Writer,
    drill_config,
    free_port,
    running,
    serve_on_two_nodes,
    until,
    version_spec,
)
from bench._report import print_table
from mlray.serving.model_names import app_name

console = Console(width=120)


def _back_after(answered_at: list[float], killed: float) -> float:
    """Seconds from the kill to the end of the longest wait between two answers that
    ends after it (calls answered just after the kill were done before the node died)."""
    pairs = [(b - a, b) for a, b in itertools.pairwise(answered_at)
             if b > killed]
    return max(pairs)[1] - killed if pairs else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()

    from mlray.storage.redis import RedisStateStore

    tmp = Path(tempfile.mkdtemp(prefix="mlray-cluster-bench-"))
    config = drill_config(tmp, args.redis, free_port())
    cluster = Cluster(head_cpus=4)
    rows: list[tuple[str, str, str]] = []
    try:
        client, url = serve_on_two_nodes(cluster, config, "fraud", tmp)
        replicas = f"ServeReplica:{app_name(config.project, 'fraud', 1)}"
        cluster.add("spare", {CONTROL: 1, MODEL: 1})
        console.print("cluster up: head, control, models-a, models-b, spare")

        # Control-plane node lost during writes.
        client.registry.create_model("writes")
        writer = Writer(client, "writes", version_spec(client, tmp))
        writer.start()
        until(lambda: writer.count() >= args.writes // 4, 300, "first writes")
        killed = cluster.kill("control")
        until(lambda: writer.count() >= args.writes, 900, f"{args.writes} writes", 0.5)
        result = writer.finish(config)
        back = _back_after(writer.answered_at, killed)
        registry_node = [a.node_id for a in cluster.actors("RegistryActor")]
        rows += [
            ("control node lost: registry answering again after", f"{back:.1f} s",
             "target <= 10 s"),
            ("  longest wait between two answers", f"{result.longest_stall_s:.1f} s", ""),
            ("  acknowledged writes lost", f"{len(result.lost)} of {len(result.acknowledged)}",
             "target 0 of >= 1000"),
            ("  writes applied without an answer (duplicates)",
             str(len(result.unacknowledged)), "target 0"),
            ("  calls that failed after retries", str(len(result.errors)), ""),
            ("  registry now on the spare node",
             str(registry_node == [cluster.node_id("spare")]), ""),
        ]

        # Model node lost under load.
        loader = Loader(url, "fraud", clients=args.clients)
        with running(loader):
            until(lambda: loader.snapshot()[0] >= 100, 120, "first predictions")
            killed = cluster.kill("models-a")
            in_flight = loader.snapshot()[2]
            survivors = sorted([cluster.node_id("models-b"), cluster.node_id("spare")])
            until(lambda: sorted(a.node_id for a in cluster.actors(replicas)) == survivors,
                   300, "the replacement replica", 0.2)
            answered = loader.snapshot()[0]
            until(lambda: loader.snapshot()[0] > answered, 60, "an answer after")
            capacity_s = time.monotonic() - killed
            ok_total = loader.snapshot()[0]
        rows += [
            ("model node lost: failed requests", str(len(loader.failed)),
             f"in flight at the kill: {in_flight} (target: failed <= in flight)"),
            ("  back to full capacity (2 replicas running, answering)",
             f"{capacity_s:.1f} s", "target <= 30 s"),
            ("  requests answered in all", str(ok_total), ""),
        ]
        if loader.failed:
            rows.append(("  first failure", loader.failed[0][:80], ""))
    finally:
        RedisStateStore(config.resolved_state_url, prefix=config.redis_prefix).drop_all()
        cluster.shutdown()

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print_table(console, f"bench/cluster.py: node loss (one run; load average {load} on "
                         f"{os.cpu_count()} cores)", ("figure", "value", "note"), rows)


if __name__ == "__main__":
    main()
