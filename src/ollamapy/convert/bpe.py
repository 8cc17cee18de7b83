"""A Hugging Face byte-level BPE tokenizer (tokenizer.json) in the form llama.cpp's `gpt2`
tokenizer reads.

llama.cpp re-implements the tokenizer rather than running tokenizer.json, and chooses its
pre-tokenizer (how text is split before BPE) by the name in `tokenizer.ggml.pre`. A wrong
name silently gives different token ids, so the name is only ever derived from a
pre-tokenizer we recognise exactly; anything else is refused. Token texts stay in their
byte-level form (`Ġthe`); added tokens keep their raw text, CONTROL when special so user text
cannot forge them, USER_DEFINED otherwise (llama.cpp matches those verbatim, as HF does).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
from gguf import TokenType

from ollamapy.convert.hf import read_json_object, read_optional_object
from ollamapy.errors import BadRequestError

TOKENIZER_FILE = "tokenizer.json"
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
"""The Split regex of Llama 3's tokenizer.json (llama.cpp's `llama-bpe`)."""
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
"""The Split regex of Qwen2/Qwen2.5/Qwen3's tokenizer.json: Llama 3's with single digits
instead of runs of up to three. llama.cpp's `qwen2` pre-tokenizer quotes it as its original
and runs the same expression with the case-insensitive group spelled out."""


def _byte_level(use_regex: bool) -> dict[str, Any]:
    return {"type": "ByteLevel", "add_prefix_space": False, "use_regex": use_regex}


def _split(regex: str) -> dict[str, Any]:
    return {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}


_PRE_TOKENIZERS: list[tuple[str, list[dict[str, Any]], bool]] = [
    ("gpt-2", [_byte_level(True)], False),
    ("smollm", [{"type": "Digits", "individual_digits": True}, _byte_level(True)], False),
    ("llama-bpe", [_split(LLAMA3_SPLIT), _byte_level(False)], True),
    ("qwen2", [_split(QWEN2_SPLIT), _byte_level(False)], False),
]
"""llama.cpp pre-tokenizer name, the tokenizer.json steps it equals (`trim_offsets` only
affects offsets, so it is ignored) and whether llama.cpp then ignores merges for it."""

_NORMALIZERS: dict[str, list[Any]] = {"qwen2": [None, {"type": "NFC"}]}
"""Normalizers accepted per pre-tokenizer (none at all for the others). Every Qwen2/Qwen3
tokenizer.json declares NFC; llama.cpp never normalises, so for text already in NFC (what
most text already is) the ids are the same, and only decomposed
input (e.g. "e" + U+0301) tokenizes differently. llama.cpp's own converter and Ollama's
accept these tokenizers the same way; refusing would refuse every Qwen model."""

ROLES = ("bos", "eos", "unk", "pad")


@dataclass(frozen=True)
class BpeVocab:
    """Everything `tokenizer.*` in the GGUF needs."""

    tokens: list[str]
    types: list[int]
    merges: list[str]
    pre: str
    special_ids: dict[str, int]
    add_bos: bool
    add_eos: bool
    chat_template: str | None


def load_bpe_vocab(model_dir: Path, n_vocab: int, config: dict[str, Any]) -> BpeVocab:
    """Read tokenizer.json and its companions, with the token list padded to `n_vocab`."""
    data = read_tokenizer_json(model_dir)
    model = _bpe_model(data)
    pre = identify_pre_tokenizer(data.get("pre_tokenizer"))
    _check_ignore_merges(model, pre)
    _check_normalizer(data.get("normalizer"), pre)
    by_id, kinds = token_ids(model, data.get("added_tokens") or [])
    tokens, types = token_list(by_id, kinds, n_vocab)
    tok_config = read_optional_object(model_dir / "tokenizer_config.json")
    roles = role_texts(model_dir, tok_config)
    ids = special_ids(roles, by_id, config)
    add_bos, add_eos = added_specials(tok_config, data.get("post_processor"), roles)
    return BpeVocab(
        tokens=tokens,
        types=types,
        merges=merge_strings(model.get("merges")),
        pre=pre,
        special_ids=ids,
        add_bos=add_bos,
        add_eos=add_eos,
        chat_template=chat_template(model_dir, tok_config),
    )


def read_tokenizer_json(model_dir: Path) -> dict[str, Any]:
    """tokenizer.json is required; a SentencePiece-only directory gets a clear refusal."""
    path = model_dir / TOKENIZER_FILE
    if not path.is_file() and (model_dir / "tokenizer.model").is_file():
        raise BadRequestError(
            "SentencePiece tokenizers (tokenizer.model without tokenizer.json) are not "
            "supported yet"
        )
    return read_json_object(path)


def _bpe_model(data: dict[str, Any]) -> dict[str, Any]:
    """The `model` section, which must be a plain byte-level-compatible BPE."""
    model = data.get("model")
    kind = model.get("type") if isinstance(model, dict) else None
    if not isinstance(model, dict) or kind != "BPE":
        raise BadRequestError(f"tokenizer.json: expected a BPE model, found {kind!r}")
    if model.get("byte_fallback"):
        raise BadRequestError(
            "tokenizer.json: BPE with byte_fallback (SentencePiece-style) is not supported yet"
        )
    for key in ("continuing_subword_prefix", "end_of_word_suffix", "dropout"):
        if model.get(key):
            raise BadRequestError(f"tokenizer.json: BPE option {key} is not supported")
    if not isinstance(model.get("vocab"), dict):
        raise BadRequestError("tokenizer.json: BPE model has no vocab")
    return model


def identify_pre_tokenizer(pre_tokenizer: Any) -> str:
    """llama.cpp's name for a tokenizer.json pre-tokenizer, only when they are identical."""
    steps = _pre_steps(pre_tokenizer)
    for name, known, _ignore_merges in _PRE_TOKENIZERS:
        if steps == known:
            return name
    described = json.dumps(pre_tokenizer, ensure_ascii=False)
    if len(described) > 600:
        described = described[:600] + "..."
    supported = ", ".join(name for name, _, _ in _PRE_TOKENIZERS)
    raise BadRequestError(
        f"unsupported tokenizer pre-tokenizer {described}: llama.cpp's equivalent is not "
        f"known (recognised: {supported})"
    )


def _pre_steps(pre_tokenizer: Any) -> list[Any]:
    """The pre-tokenizer as a flat list of steps, without the offsets-only option."""
    if isinstance(pre_tokenizer, dict) and pre_tokenizer.get("type") == "Sequence":
        steps = pre_tokenizer.get("pretokenizers")
    else:
        steps = [pre_tokenizer]
    if not isinstance(steps, list):
        return [pre_tokenizer]
    return [
        {k: v for k, v in s.items() if k != "trim_offsets"} if isinstance(s, dict) else s
        for s in steps
    ]


def _check_ignore_merges(model: dict[str, Any], pre: str) -> None:
    """llama.cpp ties `ignore_merges` to the pre-tokenizer; the file must agree with it."""
    expected = next(ignore for name, _, ignore in _PRE_TOKENIZERS if name == pre)
    if bool(model.get("ignore_merges", False)) != expected:
        raise BadRequestError(
            f"tokenizer.json: ignore_merges={bool(model.get('ignore_merges'))} differs from "
            f"what llama.cpp does for the {pre!r} pre-tokenizer"
        )


def _check_normalizer(normalizer: Any, pre: str) -> None:
    """Only no normalizer, or one `_NORMALIZERS` allows for this pre-tokenizer."""
    if normalizer in _NORMALIZERS.get(pre, [None]):
        return
    kind = normalizer.get("type") if isinstance(normalizer, dict) else None
    raise BadRequestError(f"tokenizer.json: unsupported normalizer {kind!r} for {pre!r}")


def token_ids(model: dict[str, Any], added: list[Any]) -> tuple[dict[int, str], dict[int, int]]:
    """id → text for the BPE vocabulary and the added tokens, and the added tokens' types."""
    by_id: dict[int, str] = {}
    for text, token_id in model["vocab"].items():
        by_id[_valid_id(text, token_id)] = text
    kinds: dict[int, int] = {}
    for entry in added:
        if not isinstance(entry, dict) or not isinstance(entry.get("content"), str):
            raise BadRequestError("tokenizer.json: malformed added_tokens entry")
        token_id = _valid_id(entry["content"], entry.get("id"))
        by_id[token_id] = entry["content"]
        kinds[token_id] = TokenType.CONTROL if entry.get("special") else TokenType.USER_DEFINED
    return by_id, kinds


def _valid_id(text: str, token_id: Any) -> int:
    if not isinstance(token_id, int) or isinstance(token_id, bool) or token_id < 0:
        raise BadRequestError(f"tokenizer.json: token {text!r} has invalid id {token_id!r}")
    return token_id


def token_list(
    by_id: dict[int, str], kinds: dict[int, int], n_vocab: int
) -> tuple[list[str], list[int]]:
    """Tokens in id order, exactly `n_vocab` of them; ids nobody uses become `[PADn]`."""
    if max(by_id, default=-1) >= n_vocab:
        raise BadRequestError(
            f"tokenizer has token id {max(by_id)} but the model embeds only {n_vocab} tokens"
        )
    tokens, types = [], []
    for token_id in range(n_vocab):
        text = by_id.get(token_id)
        tokens.append(f"[PAD{token_id}]" if text is None else text)
        types.append(TokenType.UNUSED if text is None else kinds.get(token_id, TokenType.NORMAL))
    return tokens, types


def merge_strings(merges: Any) -> list[str]:
    """Merges as "a b" strings; newer tokenizer.json files store [a, b] pairs."""
    if not isinstance(merges, list):
        raise BadRequestError("tokenizer.json: BPE model has no merges list")
    out = []
    for merge in merges:
        if isinstance(merge, str) and merge.count(" ") == 1:
            out.append(merge)
        elif (
            isinstance(merge, list)
            and len(merge) == 2
            and all(isinstance(p, str) and p and " " not in p for p in merge)
        ):
            out.append(f"{merge[0]} {merge[1]}")
        else:
            raise BadRequestError(f"tokenizer.json: malformed merge {merge!r}")
    return out


def role_texts(model_dir: Path, tok_config: dict[str, Any]) -> dict[str, str]:
    """Text of each special role: special_tokens_map.json overrides tokenizer_config.json."""
    merged = tok_config | read_optional_object(model_dir / "special_tokens_map.json")
    roles: dict[str, str] = {}
    for role in ROLES:
        value = merged.get(f"{role}_token")
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str):
            roles[role] = value
    return roles


def special_ids(
    roles: dict[str, str], by_id: dict[int, str], config: dict[str, Any]
) -> dict[str, int]:
    """Resolve role texts to ids; config.json's `<role>_token_id` fills roles without text."""
    ids_by_text = {text: token_id for token_id, text in sorted(by_id.items(), reverse=True)}
    ids: dict[str, int] = {}
    for role in ROLES:
        if role in roles:
            if roles[role] not in ids_by_text:
                raise BadRequestError(f"{role}_token {roles[role]!r} is not in the vocabulary")
            ids[role] = ids_by_text[roles[role]]
        elif (fallback := _config_id(config.get(f"{role}_token_id"))) in by_id:
            ids[role] = fallback
    return ids


def _config_id(value: Any) -> int:
    """A token id from config.json (Llama 3.1 lists several EOS ids: the first is primary)."""
    if isinstance(value, list) and value:
        value = value[0]
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def added_specials(
    tok_config: dict[str, Any], post_processor: Any, roles: dict[str, str]
) -> tuple[bool, bool]:
    """Whether encoding prepends BOS / appends EOS: tokenizer_config.json's flags when set,
    else what tokenizer.json's TemplateProcessing does."""
    template = _single_template(post_processor)
    specials = [s["SpecialToken"]["id"] for s in template if "SpecialToken" in s]
    add_bos = bool(template) and "SpecialToken" in template[0]
    add_eos = bool(template) and "SpecialToken" in template[-1] and len(template) > 1
    framing = [specials[0]] if add_bos else []
    framing += [specials[-1]] if add_eos else []
    if specials != framing or (add_bos and specials[0] != roles.get("bos")):
        raise BadRequestError(f"tokenizer.json: unsupported post-processor template {specials}")
    if add_eos and specials[-1] != roles.get("eos"):
        raise BadRequestError(f"tokenizer.json: post-processor appends {specials[-1]!r}, not EOS")
    flag_bos, flag_eos = tok_config.get("add_bos_token"), tok_config.get("add_eos_token")
    return (
        flag_bos if isinstance(flag_bos, bool) else add_bos,
        flag_eos if isinstance(flag_eos, bool) else add_eos,
    )


def _single_template(post_processor: Any) -> list[dict[str, Any]]:
    """The `single` template of a TemplateProcessing (possibly inside a Sequence), or []."""
    if not isinstance(post_processor, dict):
        return []
    if post_processor.get("type") == "Sequence":
        for step in post_processor.get("processors") or []:
            if found := _single_template(step):
                return found
        return []
    if post_processor.get("type") != "TemplateProcessing":
        return []
    single = post_processor.get("single")
    if not isinstance(single, list) or not all(isinstance(s, dict) for s in single):
        raise BadRequestError("tokenizer.json: malformed TemplateProcessing")
    return single


def chat_template(model_dir: Path, tok_config: dict[str, Any]) -> str | None:
    """tokenizer_config.json's chat_template (or its "default" entry), else
    chat_template.jinja, which transformers 5 writes instead."""
    value = tok_config.get("chat_template")
    if isinstance(value, list):
        named = {e.get("name"): e.get("template") for e in value if isinstance(e, dict)}
        value = named.get("default")
    if isinstance(value, str):
        return value
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    return None


def add_vocab(writer: gguf.GGUFWriter, vocab: BpeVocab) -> None:
    """The `tokenizer.*` key/values for llama.cpp's byte-level BPE (`gpt2`) tokenizer."""
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    writer.add_token_merges(vocab.merges)
    add_specials(writer, vocab.special_ids, vocab.add_bos, vocab.add_eos, vocab.chat_template)


def add_specials(
    writer: gguf.GGUFWriter,
    special_ids: dict[str, int],
    add_bos: bool,
    add_eos: bool,
    chat_template: str | None,
) -> None:
    """The special token ids, whether BOS/EOS are added, and the chat template: the same
    keys for every llama.cpp tokenizer model."""
    setters = {
        "bos": writer.add_bos_token_id,
        "eos": writer.add_eos_token_id,
        "unk": writer.add_unk_token_id,
        "pad": writer.add_pad_token_id,
    }
    for role, token_id in special_ids.items():
        setters[role](token_id)
    writer.add_add_bos_token(add_bos)
    writer.add_add_eos_token(add_eos)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
