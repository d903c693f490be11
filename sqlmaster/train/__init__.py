"""Fine-tuning: TRL SFTTrainer + PEFT LoRA (or all parameters for `tiny`), resumable, DDP-safe; then optionally GRPO.

Entry point: ``sqlmaster.train.runner.run_training(model, output_dir, recipe)`` (the ``sqlmaster train`` command).

Module map (module | what it holds | who calls it). ``tests/test_house.py`` checks that it names every module here
and no other; docs/design.md shows it (``python scripts/gen-files.py``).

| module | what it holds | who calls it |
|---|---|---|
| `runner` | `run_training`: plan → data → directory → model → trainer → train → outputs | cli, quickstart, launch |
| `guard` | `plan_run`: may a later `train` into a directory continue it; `check_init_from` | runner, launch, cli |
| `launch` | `training.cpu_processes` > 1: the same run as several torchrun processes on one machine | runner |
| `torchrun` | `sqlmaster-torchrun`: torchrun that passes the first failed worker's exit code on | launch |
| `distributed` | rank, world size and barrier, before and after torch.distributed starts | runner and most others |
| `arguments` | recipe → TRL `SFTConfig` and PEFT `LoraConfig` (the one place recipe keys meet library names) | runner |
| `trainer` | `SQLMasterTrainer`: SFTTrainer plus tokens/s, the time budget's schedule and a lean CPU loss | runner |
| `callbacks` | checkpoint COMPLETE markers, the wall-time limit, log lines, the recipe in W&B | runner |
| `budget` | `training.time_budget_minutes`: schedule and saves by the clock | runner, trainer, arguments, callbacks |
| `divergence` | stop at the first NaN/inf loss or gradient, before it reaches weights or a checkpoint | runner |
| `checkpoints` | the latest complete checkpoint to resume from (half-written ones are skipped) | runner, callbacks |
| `tracking` | Weights & Biases: online with a key, offline files in the run directory without | runner |
| `status` | what run.json's status says however the run ends (completed, diverged, interrupted, failed) | runner |
| `outputs` | run.json facts (versions, commit), the verified adapter, merged weights, hub push | runner, status |
| `grpo` | `--stage grpo`: the SFT run's model, prompt rows, TRL GRPOTrainer with the reward, its figures | runner |
| `reward` | the GRPO reward: the scorer's verdict (1 match, 0.1 runs, 0 else), isolated | grpo |

The path of one training step, in the order it runs:

1. ``runner.run_training`` → ``runner._plan``: the model (``sqlmaster.models.registry``), the device, the speed
   levers (``arguments.check_levers``) and the directory's guard (``guard.plan_run``); nothing is written yet.
2. ``launch.processes_to_start``: with several CPU processes the run restarts under ``torchrun`` (``launch``,
   ``torchrun``) and each process continues from step 3 (``distributed`` tells them apart).
3. ``runner._load_data``: the split (``sqlmaster.data``) rendered as prompt/completion rows
   (``sqlmaster.prompt``); then ``runner._prepare_directory`` writes the first files.
4. ``runner._train``: the base model (``runner._load_base``; tiny is built by ``sqlmaster.models.tiny``), W&B
   (``tracking``), and ``runner._build_trainer``: ``arguments.sft_config`` and ``lora_config``, the callbacks
   (``callbacks``, ``budget``, ``divergence``) and ``trainer.SQLMasterTrainer``. With ``--stage grpo`` the model
   is the SFT run's (``grpo.load_init``) and the trainer ``grpo.SQLMasterGRPOTrainer`` (``grpo.build_trainer``):
   each step samples SQL, scores it with ``reward.ExecutionReward`` and learns from the samples that beat their group.
5. One step inside ``trainer.train()``: a batch of packed rows → ``SQLMasterTrainer.compute_loss`` (loss on the
   completion only) → backward → ``DivergenceCallback.on_pre_optimizer_step`` (a non-finite gradient stops the
   run) → optimizer and scheduler step (the budget's schedule when there is one) → ``on_step_end`` of the
   time budget, the wall-time limit and the log line → every ``save_steps``: a checkpoint, then its COMPLETE marker
   (``callbacks.CheckpointCompleteCallback``; ``checkpoints`` resumes only from marked ones).
6. After the last step: the final evaluation, ``runner._save_outputs`` (``outputs``: adapter verified non-empty
   and recorded in run.json's ``adapter_record`` for sqlmaster/models/adapters.py's checks, optional merge and
   push), metrics.json, and run.json's status (``status.recorded_status``).
"""
