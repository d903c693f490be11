"""``sqlmaster-torchrun``: torchrun that passes a worker's exit code on, without torchrun's tracebacks.

    sqlmaster-torchrun --no-python --standalone --nproc_per_node=2 sqlmaster train ...   # the chart, G GPUs
    python -m sqlmaster.train.torchrun --standalone --nproc_per_node=2 -m sqlmaster.train.launch SPEC  # CPU

Plain torchrun exits 1 whatever its workers exited with, so a configuration error in a multi-GPU pod (exit 2,
which the Job's podFailurePolicy fails at once) became an ordinary failure that Kubernetes retried
``backoffLimit`` times. It also ends with a Python traceback when it is told to stop (SIGTERM, what Kubernetes
sends a pod it evicts: ``SignalException``) and when a worker fails (``ChildFailedError``), printed beside the
one ``error:`` line. The workers speak for themselves (their own message, ``run.json``), so here a worker's
failure ends as the exit code of the first worker that failed, and a signal as 128 + its number.
"""

from __future__ import annotations

import sys

from sqlmaster import exitcodes


def exit_code_of_failure(exitcode: int) -> int:
    """A shell-style exit code: a worker killed by signal N (exit code -N) becomes 128 + N."""
    if exitcode < 0:
        return exitcodes.interrupted(-exitcode)
    return exitcode or exitcodes.FAILURE  # a failure always fails


def main(argv: list[str]) -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    try:
        run(parse_args(argv))
    except SignalException as exc:  # torchrun stopped its workers (they save their state) and was told to stop
        return exitcodes.interrupted(int(exc.sigval))
    except ChildFailedError as exc:  # the first worker that failed (the others were stopped because of it)
        _, first = exc.get_first_failure()
        return exit_code_of_failure(first.exitcode)
    return exitcodes.OK


def cli() -> None:
    sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
    cli()
