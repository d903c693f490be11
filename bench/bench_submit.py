"""Submit latency, first-log-line latency and 50 parallel submissions against the test control plane.

    python bench/bench_submit.py                 # needs scripts/k8s-build.sh and scripts/tools.sh first
    python bench/bench_submit.py --sequential 20 --parallel 50 --workers 10

What is measured (wall clock on this machine; the control plane runs here too and shares its cores):
- submit: `submit_to_cluster` for one run = helm template + preflight (namespace, 3-4 access reviews,
  Secret, node capacity) + creating the ConfigMap and the Job; the sqlctl process start is not included
  (see `sqlctl --help` timing in tests/test_sqlctl_cli.py for that).
- first log line: from the start of the submission until `logs -f` prints the pod's first line; this
  includes the Job controller creating the pod, the scheduler binding it and the (fake) kubelet starting it.
- parallel: N submissions from a thread pool sharing one connection; wall time, and a check that exactly
  N Jobs exist afterwards.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "cli")]

import yaml  # noqa: E402
from sqlctl.commands.submit import submit_to_cluster  # noqa: E402
from sqlctl.kube import KubeSettings, connect  # noqa: E402
from sqlctl.logstream import FollowOptions, RunFollower  # noqa: E402
from sqlctl.paths import resolve_paths  # noqa: E402
from sqlctl.runid import new_run_id  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"{name:<22} n={len(ms):<3} median {statistics.median(ms):7.1f} ms"
        f"   p95 {percentile(ms, 0.95):7.1f} ms   min {min(ms):7.1f} ms   max {max(ms):7.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequential", type=int, default=10, help="submissions timed one after another")
    parser.add_argument("--first-line", type=int, default=5, help="runs timed until their first log line")
    parser.add_argument("--parallel", type=int, default=50, help="submissions made at once")
    parser.add_argument("--workers", type=int, default=10, help="threads for the parallel submissions")
    args = parser.parse_args()

    from kubernetes.client import CoreV1Api

    from tests.k8s.controlplane import Binaries, ControlPlane, make_serving_cert
    from tests.k8s.fake_kubelet import FakeKubelet, Script

    work = Path(tempfile.mkdtemp(prefix="sqlctl-bench-"))
    cp = ControlPlane(Binaries.find())
    started = time.perf_counter()
    cp.start()
    key, cert = make_serving_cert(cp.workdir / "pki", "kubelet", (cp.ca_key, cp.ca_file))
    kubelet = FakeKubelet(cp.api, cert_file=cert, key_file=key, nodes=2).start()
    print(f"control plane + fake kubelet up in {time.perf_counter() - started:.1f} s")
    try:
        ns = "bench"
        core = CoreV1Api(cp.api())
        core.create_namespace({"metadata": {"name": ns}})
        while not (sas := core.list_namespaced_service_account(ns).items) or not sas[0].secrets:
            time.sleep(0.1)
        core.create_persistent_volume(
            {
                "metadata": {"name": "bench-pv"},
                "spec": {
                    "capacity": {"storage": "1Ti"},
                    "accessModes": ["ReadWriteOnce"],
                    "hostPath": {"path": "/tmp/bench-pv"},
                    "claimRef": {"namespace": ns, "name": "data"},
                },
            }
        )
        core.create_namespaced_persistent_volume_claim(
            ns,
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
        core.create_namespaced_secret(ns, {"metadata": {"name": "sqlmaster-keys"}, "stringData": {"HF_TOKEN": "x"}})
        jobs = work / "jobs" / "train"
        jobs.mkdir(parents=True)
        (jobs / "tiny.yaml").write_text(
            yaml.safe_dump({"runs": [{"model": "tiny", "gpus": 1}], "storage": {"existingClaim": "data"}})
        )
        paths = resolve_paths(None, work / "jobs")
        kubelet.add_rule(Script(lines=("first line", "second line")), namespace=ns)

        kube = connect(KubeSettings(kubeconfig=str(cp.kubeconfig), namespace=ns))
        submit_to_cluster(kube, paths, "train", {"tiny": new_run_id("train", "tiny")}, [], [])  # warm-up

        sequential = []
        for _ in range(args.sequential):
            start = time.perf_counter()
            submit_to_cluster(kube, paths, "train", {"tiny": new_run_id("train", "tiny")}, [], [])
            sequential.append(time.perf_counter() - start)

        from sqlctl.commands.submit import _render

        render_only = []
        for _ in range(args.sequential):
            start = time.perf_counter()
            _render(paths, "train", "tiny", new_run_id("train", "tiny"), ns, [], [], kube.server_version)
            render_only.append(time.perf_counter() - start)

        first_line = []
        for _ in range(args.first_line):
            run_id = new_run_id("train", "tiny")
            got = threading.Event()
            start = time.perf_counter()
            submit_to_cluster(kube, paths, "train", {"tiny": run_id}, [], [])
            seen: list[float] = []

            def printer(_prefix: str, _line: str, seen: list[float] = seen, got: threading.Event = got) -> None:
                if not seen:
                    seen.append(time.perf_counter())
                    got.set()

            follower = RunFollower(kube, ns, run_id, printer, FollowOptions(follow=True, poll=0.1), ranks=[0])
            from sqlctl.runs import run_jobs

            follower.run(run_jobs(kube, run_id, ns))
            first_line.append(seen[0] - start)

        before = len(kube.list("batch/v1", "Job", ns, label_selector="sqlmaster.io/run-id"))
        run_ids = [new_run_id("train", "tiny") for _ in range(args.parallel)]
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.workers) as pool:
            list(pool.map(lambda r: submit_to_cluster(kube, paths, "train", {"tiny": r}, [], []), run_ids))
        wall = time.perf_counter() - start
        after = len(kube.list("batch/v1", "Job", ns, label_selector="sqlmaster.io/run-id"))

        print(summary("submit (sequential)", sequential))
        print(summary("  of which helm", render_only))
        print(summary("submit -> first log", first_line))
        print(
            f"{'parallel submissions':<22} n={args.parallel} workers={args.workers}: wall {wall:.2f} s, "
            f"{args.parallel / wall:.1f} submissions/s, "
            f"Jobs created {after - before} (expected {args.parallel})"
        )
        if after - before != args.parallel:
            sys.exit(1)
    finally:
        kubelet.stop()
        cp.stop()


if __name__ == "__main__":
    main()
