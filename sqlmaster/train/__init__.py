"""Fine-tuning: TRL SFTTrainer + PEFT LoRA (or all parameters for `tiny`), resumable, DDP-safe.

Entry point: ``sqlmaster.train.runner.run_training(model, output_dir, recipe)`` (the ``sqlmaster train`` command).
"""
