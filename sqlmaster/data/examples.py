"""One text-to-SQL example and its prompt–completion form."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from sqlmaster.prompt import PromptTemplate, render_completion, render_prompt


@dataclass(frozen=True)
class Example:
    """A question, the CREATE TABLE statements it is asked against, and the gold SQL."""

    question: str
    context: str
    answer: str

    def key(self) -> tuple[str, str]:
        """Identity used by the leakage guard: the same question on the same schema is the same task."""
        return (normalise_text(self.question), normalise_text(self.context))

    def to_prompt_completion(self, template: PromptTemplate) -> dict[str, str]:
        """The row TRL's SFTTrainer trains on; loss falls on the completion only."""
        return {
            "prompt": render_prompt(template, self.question, self.context),
            "completion": render_completion(template, self.answer),
        }

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def normalise_text(text: str) -> str:
    """Case- and whitespace-insensitive form, for duplicate and leakage checks."""
    return " ".join(text.lower().split())


def fingerprint(examples: Iterable[Example]) -> str:
    """sha256 over the examples in order: identifies exactly which data a run saw (recorded in run.json)."""
    digest = hashlib.sha256()
    for ex in examples:
        digest.update(json.dumps(ex.to_dict(), sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()
