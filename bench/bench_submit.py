"""Submit latency, first-log-line latency and parallel submissions against the test control plane.

    python bench/bench_submit.py                 # needs scripts/k8s-build.sh and scripts/tools.sh first
    python bench/bench_submit.py --sequential 20 --parallel 50 --workers 10
    nice -n 15 python bench/bench_submit.py --sequential 0 --first-line 0 --parallel 200 --workers 20 --repeat 10

What is measured (wall clock on this machine; the control plane runs here too and shares its cores):
- submit: `submit_to_cluster` for one run = helm template + preflight (namespace, 3-4 access reviews,
  Secret, node capacity) + creating the ConfigMap and the Job; the sqlctl process start is not included
  (see `sqlctl --help` timing in tests/test_sqlctl_cli.py for that).
- first log line: from the start of the submission until `logs -f` prints the pod's first line; this
  includes the Job controller creating the pod, the scheduler binding it and the (fake) kubelet starting it.
- parallel: N submissions with generated run ids (as `sqlctl submit` makes them) from a thread pool sharing
  one connection, `--repeat` times; wall time, and a check that each round created exactly N Jobs (a lost
  submission exits 1).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "cli")]

import yaml  # noqa: E402
from sqlctl.kube import Kube, KubeSettings, connect  # noqa: E402
from sqlctl.logstream import FollowOptions, RunFollower  # noqa: E402
from sqlctl.paths import RepoPaths, resolve_paths  # noqa: E402
from sqlctl.runid import new_run_id  # noqa: E402
from sqlctl.submission import UserValues, render_model, submit_to_cluster  # noqa: E402

NS = "bench"
NONE = UserValues()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(name: str, values: list[float]) -> str:
    if not values:
        return f"{name:<22} n=0"
    ms = [v * 1000 for v in values]
    return (
        f"{name:<22} n={len(ms):<3} median {statistics.median(ms):7.1f} ms"
        f"   p95 {percentile(ms, 0.95):7.1f} ms   min {min(ms):7.1f} ms   max {max(ms):7.1f} ms"
    )


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = sorted(set(re.findall(r"\b(avx512[a-z_0-9]*|amx[a-z_0-9]*)\b", text)))
    return f"{model.group(1) if model else '?'}; {' '.join(flags) or 'no avx512/amx'}"


def prepare_namespace(cp: Any, work: Path) -> RepoPaths:
    """Namespace, a bound claim and the keys Secret (what docs/cluster.md asks users to create)."""
    from kubernetes.client import CoreV1Api

    core = CoreV1Api(cp.api())
    core.create_namespace({"metadata": {"name": NS}})
    while not (sas := core.list_namespaced_service_account(NS).items) or not sas[0].secrets:
        time.sleep(0.1)
    core.create_persistent_volume(
        {
            "metadata": {"name": "bench-pv"},
            "spec": {
                "capacity": {"storage": "1Ti"},
                "accessModes": ["ReadWriteOnce"],
                "hostPath": {"path": "/tmp/bench-pv"},
                "claimRef": {"namespace": NS, "name": "data"},
            },
        }
    )
    core.create_namespaced_persistent_volume_claim(
        NS,
        {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
                "storageClassName": "",
                "volumeName": "bench-pv",
            },
        },
    )
    core.create_namespaced_secret(NS, {"metadata": {"name": "sqlmaster-keys"}, "stringData": {"HF_TOKEN": "x"}})
    jobs = work / "jobs" / "train"
    jobs.mkdir(parents=True)
    (jobs / "tiny.yaml").write_text(
        yaml.safe_dump({"runs": [{"model": "tiny", "gpus": 1}], "storage": {"existingClaim": "data"}})
    )
    return resolve_paths(None, work / "jobs")


def submit(kube: Kube, paths: RepoPaths, run_id: str | None = None) -> str:
    plans, _ = submit_to_cluster(kube, paths, "train", ["tiny"], NONE, run_id)
    return plans[0].run_id


def timed(times: int, action: Any) -> list[float]:
    out = []
    for _ in range(times):
        start = time.perf_counter()
        action()
        out.append(time.perf_counter() - start)
    return out


def first_line_latency(kube: Kube, paths: RepoPaths) -> float:
    from sqlctl.runs import run_jobs

    got = threading.Event()
    seen: list[float] = []
    start = time.perf_counter()
    run_id = submit(kube, paths)

    def printer(_prefix: str, _line: str) -> None:
        if not seen:
            seen.append(time.perf_counter())
            got.set()

    follower = RunFollower(kube, NS, run_id, printer, FollowOptions(follow=True, poll=0.1), ranks=[0])
    follower.run(run_jobs(kube, run_id, NS))
    return seen[0] - start


def parallel_round(kube: Kube, paths: RepoPaths, count: int, workers: int) -> tuple[float, int]:
    """`count` submissions at once; returns (wall seconds, Jobs created)."""
    before = len(kube.list("batch/v1", "Job", NS, label_selector="sqlmaster.io/run-id"))
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda _: submit(kube, paths), range(count)))
    wall = time.perf_counter() - start
    after = len(kube.list("batch/v1", "Job", NS, label_selector="sqlmaster.io/run-id"))
    return wall, after - before


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sequential", type=int, default=10, help="submissions timed one after another")
    parser.add_argument("--first-line", type=int, default=5, help="runs timed until their first log line")
    parser.add_argument("--parallel", type=int, default=50, help="submissions made at once")
    parser.add_argument("--workers", type=int, default=10, help="threads for the parallel submissions")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of parallel submissions")
    args = parser.parse_args()

    from tests.k8s.controlplane import Binaries, ControlPlane, make_serving_cert
    from tests.k8s.fake_kubelet import FakeKubelet, Script

    print(f"CPU: {cpu_flags()}")
    work = Path(tempfile.mkdtemp(prefix="sqlctl-bench-"))
    cp = ControlPlane(Binaries.find())
    started = time.perf_counter()
    cp.start()
    key, cert = make_serving_cert(cp.workdir / "pki", "kubelet", (cp.ca_key, cp.ca_file))
    kubelet = FakeKubelet(cp.api, cert_file=cert, key_file=key, nodes=2).start()
    print(f"control plane + fake kubelet up in {time.perf_counter() - started:.1f} s")
    try:
        paths = prepare_namespace(cp, work)
        kubelet.add_rule(Script(lines=("first line", "second line")), namespace=NS)
        kube = connect(KubeSettings(kubeconfig=str(cp.kubeconfig), namespace=NS))
        submit(kube, paths)  # warm-up
        sequential = timed(args.sequential, lambda: submit(kube, paths))
        version = kube.server_version
        helm_only = timed(
            args.sequential,
            lambda: render_model(paths, "train", "tiny", new_run_id("train", "tiny"), NS, NONE, None, version),
        )
        first_line = [first_line_latency(kube, paths) for _ in range(args.first_line)]
        print(summary("submit (sequential)", sequential))
        print(summary("  of which helm", helm_only))
        print(summary("submit -> first log", first_line))
        lost = 0
        for round_ in range(1, args.repeat + 1):
            wall, created = parallel_round(kube, paths, args.parallel, args.workers)
            lost += args.parallel - created
            print(
                f"parallel round {round_}/{args.repeat}: n={args.parallel} workers={args.workers}: wall {wall:.2f} s, "
                f"{args.parallel / wall:.1f} submissions/s, Jobs created {created} (expected {args.parallel})",
                flush=True,
            )
        print(f"parallel: {args.repeat} rounds, {lost} submissions lost")
        if lost:
            sys.exit(1)
    finally:
        kubelet.stop()
        cp.stop()


if __name__ == "__main__":
    main()
