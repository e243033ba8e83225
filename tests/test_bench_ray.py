"""The Ray backend: a simulated 2-node cluster gives the local backend's records; a killed node loses nothing.

Needs Ray core (``pip install 'mtg-env[bench]'``); skipped cleanly without it. Each test starts its own
``ray.cluster_utils.Cluster`` and shuts down only that cluster (never ``ray stop``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mtg_env.bench import config_from_dict, run_bench
from tests.test_bench import TINY

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402  (after the importorskip)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")


@pytest.fixture
def cluster() -> Iterator[Any]:
    """A head with no CPUs (no task runs on the driver's node) and two 1-CPU worker nodes."""
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    c.add_node(num_cpus=1)
    c.add_node(num_cpus=1)
    try:
        ray.init(address=c.address, log_to_driver=False)
        c.wait_for_nodes()
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


@pytest.fixture(scope="module")
def local_results(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    out = tmp_path_factory.mktemp("ray_reference")
    run_bench(config_from_dict(TINY), out, "local", report=False)
    return (out / "results.jsonl").read_bytes()


@pytest.mark.slow
def test_a_two_node_cluster_gives_the_local_records(cluster: Any, local_results: bytes, tmp_path: Path) -> None:
    run_bench(config_from_dict(TINY), tmp_path, "ray", report=False)
    assert ray.is_initialized()  # the runner leaves a Ray it did not start alone
    assert (tmp_path / "results.jsonl").read_bytes() == local_results


@pytest.mark.slow
def test_a_worker_node_killed_mid_run_loses_no_match(cluster: Any, local_results: bytes, tmp_path: Path) -> None:
    workers = [node for node in cluster.list_all_nodes() if not node.is_head()]
    killed: list[Any] = []

    def kill_a_node(record: dict[str, Any]) -> None:
        if not killed:  # after the first finished match, while the others run on both nodes
            killed.append(workers[0])
            cluster.remove_node(workers[0], allow_graceful=False)

    run_bench(config_from_dict(TINY), tmp_path, "ray", max_retries=3, report=False, on_record=kill_a_node)
    assert killed
    assert (tmp_path / "results.jsonl").read_bytes() == local_results
