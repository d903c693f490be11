"""Weights & Biases set-up: online with WANDB_API_KEY, offline (files in the run directory) without it.

WANDB_MODE=offline or disabled in the environment is obeyed whatever keys are set: nothing is sent that the user
turned off (a key alone means online only where no mode is given). Every file W&B writes (its run files, cache,
config, data, artifacts and debug logs) stays under the run's logs/ folder, not under $HOME.

The key is read by wandb itself from the environment; it is never logged, printed or written to run.json.
W&B being unreachable never stops training: ``start_wandb`` opens the run before the Trainer does, and when
the online start fails (after wandb's ``init_timeout``, env ``WANDB_INIT_TIMEOUT``, 90 s by default) it
warns and continues offline; ``wandb sync`` uploads the files under logs/ later.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import secrets
from pathlib import Path

from sqlmaster.config import TrackingConfig
from sqlmaster.errors import ConfigError
from sqlmaster.rundir import RunDir

log = logging.getLogger("sqlmaster.train")


def run_id_for(output_dir: Path) -> str:
    """The run id: SQLMASTER_RUN_ID (set by the charts and sqlctl) or the output directory's name."""
    return os.environ.get("SQLMASTER_RUN_ID") or Path(output_dir).resolve().name


# WANDB_MODE values that turn sending off, and the mode each means here ("dryrun" is wandb's old name for offline).
MODES_OFF = {"offline": "offline", "dryrun": "offline", "disabled": "disabled"}


def wandb_mode(cfg: TrackingConfig) -> str:
    """The mode to run W&B in: the environment's WANDB_MODE when it turns sending off, else the recipe's, where
    auto is online with WANDB_API_KEY and offline without."""
    turned_off = MODES_OFF.get(os.environ.get("WANDB_MODE", "").strip().lower())
    if turned_off and (cfg.wandb_mode in ("auto", "online") or turned_off == "disabled"):
        if cfg.wandb_mode == "online":
            log.warning("WANDB_MODE=%s is set: W&B runs %s, not online as the recipe says", turned_off, turned_off)
        return turned_off
    if cfg.wandb_mode != "auto":
        return cfg.wandb_mode
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def configure_wandb(cfg: TrackingConfig, *, run_id: str, model_name: str, run_dir: Path) -> list[str]:
    """Set wandb's environment for the HF integration and return the Trainer's ``report_to``.

    The W&B run id is derived from the run id, model and output directory, so a resumed pod continues the
    same W&B run, while the models of one sweep (same run id) stay separate runs in one group.
    """
    mode = wandb_mode(cfg)
    if mode == "disabled":
        return []
    if importlib.util.find_spec("wandb") is None:
        if cfg.wandb_mode == "auto":
            log.warning("wandb is not installed: tracking disabled (pip install 'sqlmaster[train]')")
            return []
        raise ConfigError("tracking.wandb_mode needs the wandb package. Install it or set tracking.wandb_mode=disabled")
    if mode == "online" and not os.environ.get("WANDB_API_KEY"):
        raise ConfigError("tracking.wandb_mode=online needs WANDB_API_KEY. Set it, or use tracking.wandb_mode=auto")
    logs_dir = RunDir(run_dir).logs
    logs_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(f"{run_id}|{model_name}|{run_dir.resolve()}".encode()).hexdigest()[:8]
    wandb_id = re.sub(r"[^A-Za-z0-9_-]", "-", f"{run_id}-{model_name}")[:54] + f"-{digest}"
    # transformers' W&B integration prints "[INFO] Running in WANDB offline mode" when it is first imported with
    # WANDB_MODE=offline set (transformers/integrations/integration_utils.py): import it before setting it.
    import transformers.integrations.integration_utils  # noqa: F401

    os.environ.update(
        {
            **{name: str(logs_dir / folder) for name, folder in OWN_FILES.items()},
            "WANDB_MODE": mode,
            "WANDB_PROJECT": cfg.wandb_project,
            "WANDB_DIR": str(logs_dir),
            "WANDB_RUN_ID": wandb_id,
            "WANDB_RESUME": "allow",
            "WANDB_RUN_GROUP": run_id,
            "WANDB_NAME": run_id,
            "WANDB_LOG_MODEL": "false",  # artifacts go to the run directory / hub, not W&B
            "WANDB_WATCH": "false",
        }
    )
    os.environ.setdefault("WANDB_SILENT", "true")
    log.info("W&B: project %s, run %s, mode %s (files under %s)", cfg.wandb_project, run_id, mode, logs_dir)
    return ["wandb"]


# wandb's own folders (default: ~/.cache/wandb, ~/.config/wandb, ~/.local/share/wandb, ./artifacts), kept in logs/.
OWN_FILES = {
    "WANDB_CACHE_DIR": "wandb-cache",
    "WANDB_CONFIG_DIR": "wandb-config",
    "WANDB_DATA_DIR": "wandb-data",
    "WANDB_ARTIFACT_DIR": "wandb-artifacts",
}


def start_wandb(report_to: list[str]) -> None:
    """Open the W&B run now (main process), online if W&B answers, else offline with a warning.

    The Trainer's WandbCallback then reuses this run; the run's settings come from the environment that
    ``configure_wandb`` set.
    """
    if "wandb" not in report_to or os.environ.get("WANDB_MODE") != "online":
        return
    import wandb

    try:
        wandb.init()
    except Exception as exc:  # CommError, AuthenticationError, timeouts: W&B could not be reached or refused us
        log.warning(
            "W&B is unreachable or refused the run (%s): continuing offline. Upload the files under %s later "
            "with `wandb sync`",
            " ".join(str(exc).split())[:200],
            os.environ.get("WANDB_DIR", "logs/"),
        )
        os.environ["WANDB_MODE"] = "offline"
        if wandb.run is not None:
            wandb.finish()
        # A fresh id: the failed online start may hold the old one (wandb refused to reuse it and the run died).
        fresh = f"{os.environ.get('WANDB_RUN_ID', 'run')[:50]}-offline-{secrets.token_hex(3)}"
        os.environ["WANDB_RUN_ID"] = fresh
        wandb.init(mode="offline", id=fresh)
