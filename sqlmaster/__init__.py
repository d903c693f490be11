"""SQLMaster: LoRA fine-tuning and trustworthy evaluation of open 7B models for text-to-SQL.

Heavy libraries (torch, transformers, trl) are imported inside the functions that need them, so that
``import sqlmaster`` and ``sqlmaster --help`` stay instant and ``sqlctl`` can reuse the torch-free parts.
"""

__version__ = "0.1.0"
