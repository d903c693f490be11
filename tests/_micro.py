"""The micro `tiny` model the training tests share: one layer, 32 wide, a 300-token vocabulary (seconds per run)."""

MICRO_MODEL = [
    "model.mode=full",
    "model.tiny_hidden_size=32",
    "model.tiny_layers=1",
    "model.tiny_heads=2",
    "model.tiny_intermediate_size=64",
    "model.tiny_vocab_size=300",
    "model.gradient_checkpointing=false",
]

# How every training test runs: one process of one thread for a counted number of steps, a log line per step, no
# W&B (tiny's jobs/ recipe trains in two processes for a time budget).
ONE_PROCESS_STEPS = [
    "training.warmup_steps=0",
    "training.logging_steps=1",
    "training.early_stopping_patience=null",
    "training.num_threads=1",
    "tracking.wandb_mode=disabled",
    "training.time_budget_minutes=null",
    "training.cpu_processes=1",
]

# MICRO_MODEL fine-tuned on a small split with the compact prompt and batches of 4: tens of steps in seconds. Each
# test file adds its step count and evaluation/checkpoint cadence.
MICRO_SFT = [
    *MICRO_MODEL,
    "data.test_size=10",
    "data.validation_size=8",
    "prompt.template=compact",
    "training.per_device_train_batch_size=4",
    "training.gradient_accumulation_steps=1",
    "training.learning_rate=3e-3",
    "training.max_length=256",
    *ONE_PROCESS_STEPS,
]
