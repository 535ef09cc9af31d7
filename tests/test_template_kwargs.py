"""Chat-template switches (Qwen3's enable_thinking) reach the model's template: a search
with the thought opened by the template thinks, one with it switched off answers at once,
and `--template-kwarg` sets them from the command line."""

from pathlib import Path
from typing import Any

import click
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from lab.recording import RecordingEngine
from tests.utils.thinker import ASSISTANT, THINKING_SWITCH, ScriptedThinker
from ttcq.api.cli_options import config_from
from ttcq.worker.engines.hf_tokenizer import HFTokenizer
from ttcq.worker.search.config import ConfigError, make_config
from ttcq.worker.search.registry import run_search
from ttcq.worker.search.types import Problem, SearchResult
from ttcq.worker.verifiers.base import NoVerifier


@pytest.fixture(scope="module")
def switched(tmp_path_factory: pytest.TempPathFactory) -> HFTokenizer:
    """A model folder whose template opens the assistant's turn with THINKING_SWITCH."""
    folder = tmp_path_factory.mktemp("model")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(["think answer"], trainers.BpeTrainer(
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<eos>"]))
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text('{"eos_token": "<eos>"}')
    (folder / "chat_template.jinja").write_text(
        "{% for m in messages %}U:{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}" + ASSISTANT + THINKING_SWITCH + "{% endif %}")
    return HFTokenizer(folder)


class TemplatedThinker(ScriptedThinker):
    """TEST DOUBLE: the scripted thinker with its prompt rendered by a real template."""

    def __init__(self, tokenizer: HFTokenizer):
        super().__init__(self.reply)
        self.template = tokenizer

    def chat_prompt(self, messages: Any, template_kwargs: Any = None) -> list[int]:
        return self.tokenize(self.template.render(messages, template_kwargs=template_kwargs))

    @staticmethod
    def reply(so_far: str, seed: int) -> str:
        if so_far == "<think>\n":  # thinking: the template opened the thought
            return "6 times 7</think>\\boxed{42}<eos>"
        assert so_far == "<think>\n\n</think>\n\n"
        return "\\boxed{41}<eos>"


def _search(tokenizer: HFTokenizer, **values: Any) -> tuple[SearchResult, TemplatedThinker]:
    engine = TemplatedThinker(tokenizer)
    config = make_config(strategy="majority", verifier="none", n=2, **values)
    result = run_search(Problem("6 * 7?", "42"), config, RecordingEngine(engine), NoVerifier())
    return result, engine


def test_the_template_renders_its_switch(switched: HFTokenizer) -> None:
    chat = [{"role": "user", "content": "6 * 7?"}]
    assert switched.render(chat).endswith(ASSISTANT + "<think>\n")
    off = switched.render(chat, template_kwargs={"enable_thinking": False})
    assert off.endswith(ASSISTANT + "<think>\n\n</think>\n\n")
    assert switched.chat_prompt(chat, template_kwargs={"enable_thinking": False}) == (
        switched.tokenize(off))


def test_a_search_thinks_or_not_as_the_switch_says(switched: HFTokenizer) -> None:
    thinking, _ = _search(switched)
    assert [c.answer for c in thinking.candidates] == ["42", "42"]
    assert thinking.thinking_tokens == 2 * len("6 times 7</think>")
    off, engine = _search(switched, chat_template_kwargs={"enable_thinking": False})
    assert [c.answer for c in off.candidates] == ["41", "41"]
    assert off.thinking_tokens == 0
    assert engine.detokenize(engine.calls[0][0].prompt_ids).endswith("</think>\n\n")


def test_template_kwargs_from_the_command_line(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("chat_template_kwargs: {reasoning_effort: high}\n")
    config = config_from(recipe, {"template_kwargs": ("enable_thinking=false", "depth=3")})
    assert config["chat_template_kwargs"] == {
        "reasoning_effort": "high", "enable_thinking": False, "depth": 3}
    assert make_config(**config).chat_template_kwargs["enable_thinking"] is False
    with pytest.raises(click.BadParameter, match="'enable_thinking': expected KEY=VALUE"):
        config_from(None, {"template_kwargs": ("enable_thinking",)})


def test_a_switch_ttcq_sets_itself_is_refused_naming_it() -> None:
    with pytest.raises(ConfigError, match="chat_template_kwargs.messages: set by ttcq"):
        make_config(chat_template_kwargs={"messages": "x"})
