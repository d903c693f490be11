"""torchrun for the CPU training launcher (:mod:`.launch`), minus its tracebacks.

``python -m torch.distributed.run`` ends with a Python traceback when it is told to stop (SIGTERM, what Kubernetes
sends a pod it evicts: ``SignalException``) and when a worker fails (``ChildFailedError``), printed beside the
launcher's one ``error:`` line. The workers speak for themselves (their own message, the launcher's outcome
file, the run's ``run.json``), so here both end as an exit code only:

    python -m sqlmaster.train.torchrun --standalone --nproc_per_node=2 -m sqlmaster.train.launch SPEC
"""

from __future__ import annotations

import sys


def exit_code_of_failure(exitcode: int) -> int:
    """A shell-style exit code: a worker killed by signal N (exit code -N) becomes 128 + N."""
    return exitcode if exitcode > 0 else 128 - exitcode if exitcode < 0 else 1


def main(argv: list[str]) -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    try:
        run(parse_args(argv))
    except SignalException as exc:  # torchrun stopped its workers (they save their state) and was told to stop
        return 128 + int(exc.sigval)
    except ChildFailedError as exc:  # the first worker that failed, as its own exit code
        first = min(exc.failures.items())[1]
        return exit_code_of_failure(first.exitcode)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
