"""A served model's own tokenizer and chat template, read from its Hugging Face folder.

Served engines continue branches by token ids, so the worker must tokenize exactly as the
server does: the same tokenizer.json (Rust `tokenizers`, no torch) and the model's Jinja
chat template. Detokenizing is local too: step splitting asks for many prefixes' text."""

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

from ttcq.worker.engines.base import EngineError

_CONTROL = re.compile(r"<\|[A-Za-z_]+\|>")  # cut from message contents (see chat_prompt)


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _ids(value: Any) -> set[int]:
    if isinstance(value, int):
        return {value}
    return {v for v in value if isinstance(v, int)} if isinstance(value, list) else set()


def _token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or {"content": ...}."""
    return value.get("content") if isinstance(value, dict) else value


class HFTokenizer:
    def __init__(self, folder: str | Path):
        folder = Path(folder)
        if not (folder / "tokenizer.json").is_file():
            raise EngineError(f"no tokenizer.json in {folder}: set TTCQ_TOKENIZER_PATH to a "
                              "local copy of the served model's folder")
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        config = _read_json(folder / "tokenizer_config.json")
        self.bos_token = _token_text(config.get("bos_token")) or ""
        self.eos_token = _token_text(config.get("eos_token")) or ""
        self.template = self._template(folder, config)
        self.eos_token_ids = self._eos_ids(folder)

    def _template(self, folder: Path, config: dict[str, Any]) -> jinja2.Template:
        text = config.get("chat_template")
        if (folder / "chat_template.jinja").is_file():  # transformers 5 keeps it apart
            text = (folder / "chat_template.jinja").read_text(encoding="utf-8")
        if not isinstance(text, str):
            raise EngineError(f"{folder} has no chat template")
        # As transformers renders chat templates: sandboxed, blocks trimmed.
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = self._raise
        return env.from_string(text)

    @staticmethod
    def _raise(message: str) -> None:
        raise EngineError(f"chat template: {message}")

    def _eos_ids(self, folder: Path) -> tuple[int, ...]:
        ids = _ids(_read_json(folder / "generation_config.json").get("eos_token_id"))
        ids |= _ids(_read_json(folder / "config.json").get("eos_token_id"))
        if self.eos_token and (eos := self.tokenizer.token_to_id(self.eos_token)) is not None:
            ids.add(eos)
        return tuple(sorted(ids))

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.get_vocab_size(with_added_tokens=True))

    def tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)

    def render(self, messages: Sequence[dict[str, str]], *, reply: bool = True,
               template_kwargs: Mapping[str, Any] | None = None) -> str:
        """The chat as text; reply: end where the assistant's next turn starts;
        template_kwargs: the template's own switches (Qwen3's enable_thinking)."""
        # A problem that spells out a control token must not open or close a turn.
        clean = [{**m, "content": _CONTROL.sub("", m["content"])} for m in messages]
        return self.template.render(messages=clean, add_generation_prompt=reply,
                                    bos_token=self.bos_token, eos_token=self.eos_token,
                                    **(template_kwargs or {}))

    def chat_prompt(self, messages: Sequence[dict[str, str]], *, reply: bool = True,
                    template_kwargs: Mapping[str, Any] | None = None) -> list[int]:
        """Token ids of the rendered chat, control tokens parsed as such."""
        text = self.render(messages, reply=reply, template_kwargs=template_kwargs)
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)
