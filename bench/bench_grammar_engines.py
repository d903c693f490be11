"""CPU cost of the two grammar engines vLLM ships (llguidance, xgrammar) on evaluation.constrain's grammars.

    python bench/bench_grammar_engines.py --n 50     # needs xgrammar (vLLM's dependency; not the project's)

For the first ``--n`` held-out rows (the quickstart's split), each engine compiles the row's grammar
(``grammar+values``) for SmolLM2's tokenizer (49,152 tokens) and then walks the gold answer token by token,
computing the full next-token mask before each token, as a decode does. Printed: milliseconds per grammar
compile and microseconds per mask, per engine; last line JSON. The llguidance grammar is the project's Lark
grammar; the xgrammar one is the same language in xgrammar's EBNF (case-insensitive strings as character classes,
whitespace explicit), written here.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from typing import Any

from sqlmaster.evaluate import constrain as c


def _ci(text: str) -> str:
    parts = [f"[{ch.lower()}{ch.upper()}]" if ch.lower() != ch.upper() else json.dumps(ch) for ch in text]
    return " ".join(parts) if parts else '""'


def ebnf(context: str, question: str, stop: str) -> str:
    """``c.sql_grammar(..., mode="grammar+values")`` (without database values) in xgrammar's EBNF."""
    schema = c.parse_schema(context)
    aliases = ["T1", "T2", "T3", "T4", "T5", "T6"]
    words = [*c.KEYWORDS, *schema.tables, *schema.columns, *aliases]
    lines = [
        f'root ::= ws {_ci("SELECT")} items ws ";"? ws {json.dumps(stop)}?',
        "items ::= (ws item)*",
        "ws ::= [ \\t]*",
        'item ::= word | qualified | op | string | number | "," | "(" items ws ")"',
        "word ::= " + " | ".join(f"({_ci(w)})" for w in sorted(set(words))),
        "qual ::= " + " | ".join(f"({_ci(w)})" for w in sorted({*schema.tables, *aliases})),
        "col ::= " + " | ".join([*(f"({_ci(w)})" for w in sorted(set(schema.columns))), '"*"']),
        'qualified ::= qual "." col',
        "op ::= " + " | ".join(json.dumps(o) for o in c.OPERATORS),
        'number ::= [0-9]+ ("." [0-9]+)?',
        'string ::= "\\"" "%"? sdq "%"? "\\"" | "\'" "%"? ssq "%"? "\'"',
    ]
    units = list(re.finditer(r"\w+|[^\w\s]", question))
    for name, quote in (("sdq", '"'), ("ssq", "'")):
        ok = [quote not in m.group() for m in units]
        starts = []
        for i, unit in enumerate(units):
            if not ok[i]:
                continue
            starts.append(f"{name}{i}")
            rule = f"{name}{i} ::= {_ci(unit.group())}"
            if i + 1 < len(units) and ok[i + 1]:
                gap = question[unit.end() : units[i + 1].start()]
                rule += f" ({json.dumps(gap)} {name}{i + 1})?" if gap else f" {name}{i + 1}?"
            lines.append(rule)
        lines.append(f"{name} ::= " + (" | ".join(starts) or '"_"'))
    return "\n".join(lines) + "\n"


def bench_llguidance(tokenizer: Any, rows: list[dict[str, str]]) -> dict[str, float]:
    import llguidance
    import torch

    lltok = c.ll_tokenizer(tokenizer, [tokenizer.eos_token_id])
    words = (lltok.vocab_size + 31) // 32
    mask = torch.zeros(words, dtype=torch.int32)
    compile_s = mask_s = 0.0
    masks = admitted = 0
    for row in rows:
        grammar = c.sql_grammar(row["context"], row["question"], stop="\n")
        start = time.perf_counter()
        matcher = llguidance.LLMatcher(lltok, grammar, log_level=0)
        compile_s += time.perf_counter() - start
        for token in tokenizer(row["answer"], add_special_tokens=False)["input_ids"]:
            start = time.perf_counter()
            matcher.unsafe_compute_mask_ptr(mask.data_ptr(), words * 4)
            mask_s += time.perf_counter() - start
            masks += 1
            matcher.consume_token(token)
        admitted += matcher.is_accepting() and not matcher.is_error()
    return {"compile_ms": 1000 * compile_s / len(rows), "mask_us": 1e6 * mask_s / masks, "admitted": admitted}


def bench_xgrammar(tokenizer: Any, rows: list[dict[str, str]]) -> dict[str, float]:
    import xgrammar as xgr

    info = xgr.TokenizerInfo.from_huggingface(tokenizer)
    compiler = xgr.GrammarCompiler(info, cache_enabled=False)
    bitmask = xgr.allocate_token_bitmask(1, info.vocab_size)
    compile_s = mask_s = 0.0
    masks = admitted = 0
    for row in rows:
        start = time.perf_counter()
        compiled = compiler.compile_grammar(ebnf(row["context"], row["question"], "\n"))
        matcher = xgr.GrammarMatcher(compiled)
        compile_s += time.perf_counter() - start
        for token in tokenizer(row["answer"], add_special_tokens=False)["input_ids"]:
            start = time.perf_counter()
            matcher.fill_next_token_bitmask(bitmask)
            mask_s += time.perf_counter() - start
            masks += 1
            matcher.accept_token(token)
        admitted += matcher.is_completed() or matcher.accept_token(tokenizer.eos_token_id)
    return {"compile_ms": 1000 * compile_s / len(rows), "mask_us": 1e6 * mask_s / masks, "admitted": admitted}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50)
    args = parser.parse_args()
    from bench_train_cpu import cpu_description

    from sqlmaster.config import DataConfig
    from sqlmaster.data.pipeline import build_splits
    from sqlmaster.models.loading import load_tokenizer
    from sqlmaster.models.registry import resolve_model

    test = build_splits(DataConfig(source="shipped", drop_invalid_gold=True)).test[: args.n]
    rows = [{"question": ex.question, "context": ex.context, "answer": ex.answer} for ex in test]
    tokenizer = load_tokenizer(resolve_model("smollm2-135m"), for_generation=True)
    result: dict[str, Any] = {"rows": len(rows), "cpu": cpu_description()}
    for name, fn in (("llguidance", bench_llguidance), ("xgrammar", bench_xgrammar)):
        result[name] = fn(tokenizer, rows)
        r = result[name]
        print(
            f"{name:<11} compile {r['compile_ms']:8.1f} ms/grammar   mask {r['mask_us']:8.1f} us/token   "
            f"gold admitted {r['admitted']}/{len(rows)}"
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
