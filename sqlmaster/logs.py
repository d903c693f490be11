"""Console logging for the workload: plain timestamped lines on stdout, which is what `kubectl logs` shows.

Training and evaluation share this setup so both read the same in a pod's log; progress bars are turned off
because they turn into walls of carriage returns in log files.
"""

from __future__ import annotations

import logging
import sys


def setup_logging(main_process: bool = True) -> None:
    """Log ``sqlmaster.*`` at INFO on the main process (WARNING on other DDP ranks); silence library chatter."""
    logger = logging.getLogger("sqlmaster")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%Y-%m-%d %H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO if main_process else logging.WARNING)
    logger.propagate = False

    import datasets
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_warning()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
