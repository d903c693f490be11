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
