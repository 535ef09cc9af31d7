"""What a worker searches with, built from its settings: the policy engine (llama.cpp
in-process, an SGLang server, or an OpenAI-compatible one) and the verifier servers."""

import logging
from typing import TYPE_CHECKING

from ttcq.settings import Settings
from ttcq.worker.engines.base import Engine
from ttcq.worker.engines.http import ServerClient
from ttcq.worker.verifiers.factory import ServedVerifiers

if TYPE_CHECKING:
    from ttcq.worker.verifiers.classifier_prm import ClassifierPRM

logger = logging.getLogger(__name__)


def make_engine(settings: Settings) -> Engine:
    if settings.engine == "sglang":
        from ttcq.worker.engines.sglang import SGLangEngine

        return SGLangEngine(settings.engine_url, tokenizer_path=settings.tokenizer_path,
                            expected_model=settings.engine_model,
                            timeout=settings.engine_timeout_seconds)
    if settings.engine == "openai":
        from ttcq.worker.engines.openai import OpenAIEngine

        return OpenAIEngine(settings.engine_url, model=settings.engine_model,
                            tokenizer_path=settings.tokenizer_path,
                            api_key=settings.engine_api_key,
                            timeout=settings.engine_timeout_seconds)
    from ttcq.worker.engines.llamacpp import LlamaCppEngine  # heavy: only where it runs

    return LlamaCppEngine(settings.model_path, settings.n_ctx, settings.n_threads)


def make_served_verifiers(settings: Settings) -> ServedVerifiers:
    """The PRM, ORM and classifier-PRM servers the settings name; those not named stay None."""
    prm_engine = None
    if settings.prm_url:
        from ttcq.worker.engines.sglang import SGLangEngine

        prm_engine = SGLangEngine(settings.prm_url, tokenizer_path=settings.prm_tokenizer_path,
                                  timeout=settings.engine_timeout_seconds)
    orm = None
    if settings.orm_url:
        from ttcq.worker.engines.hf_tokenizer import HFTokenizer
        from ttcq.worker.verifiers.orm import OutcomeRewardModel

        server = ServerClient(settings.orm_url, name=f"{settings.orm_api} reward model",
                              timeout=settings.engine_timeout_seconds)
        tokenizer = HFTokenizer(settings.orm_tokenizer_path or _reward_folder(server))
        orm = OutcomeRewardModel(server, tokenizer, settings.orm_api, settings.orm_model)
    return ServedVerifiers(prm_engine=prm_engine, prm_format=settings.prm_format, orm=orm,
                           classifier_prm=_classifier_prm(settings))


def _classifier_prm(settings: Settings) -> "ClassifierPRM | None":
    if not settings.classifier_prm_url:
        return None
    from ttcq.worker.engines.hf_tokenizer import HFTokenizer
    from ttcq.worker.verifiers.classifier_prm import ClassifierPRM

    server = ServerClient(settings.classifier_prm_url, name="vllm classifier PRM",
                          timeout=settings.engine_timeout_seconds)
    folder = settings.classifier_prm_tokenizer_path or _vllm_model_folder(server)
    return ClassifierPRM(server, HFTokenizer(folder), settings.classifier_prm_model)


def _reward_folder(server: ServerClient) -> str:
    """An SGLang reward server says where its model lives; vLLM does not."""
    info = server.get("/get_model_info")
    return str(info.get("tokenizer_path") or info["model_path"])


def _vllm_model_folder(server: ServerClient) -> str:
    """The folder vLLM loaded its (first) model from: /v1/models calls it the root."""
    return str(server.get("/v1/models")["data"][0]["root"])


# Below this many KV-cache tokens per search in flight, the radix cache evicts a search's
# shared prefixes between its steps (bench/saturation.py: beam search N=8 kept 0.95 of its
# prompt tokens cached with 4,096 per search, 0.66 with 1,024).
KV_TOKENS_PER_SEARCH = 2048


def kv_pool_warning(pool_tokens: int, in_flight: int) -> str:
    """A warning for the start line when the server's KV pool is too small for the worker's
    searches in flight; "" when it is large enough or unknown."""
    if not pool_tokens or pool_tokens >= in_flight * KV_TOKENS_PER_SEARCH:
        return ""
    return (f"; WARNING: the server's KV cache holds {pool_tokens} tokens, "
            f"{pool_tokens // in_flight} per search at TTCQ_IN_FLIGHT={in_flight}: prefixes "
            f"will be evicted between steps (lower TTCQ_IN_FLIGHT or give the server more "
            f"--max-total-tokens; about {KV_TOKENS_PER_SEARCH} per search keeps them)")


def check_served_engine(settings: Settings, in_flight: int = 1) -> str:
    """Before a worker takes messages: the server answers, serves the expected model and
    generates a real token. Returns a line for the log; raises EngineError otherwise."""
    engine = make_engine(settings)
    try:
        engine.health_check()
        seeds = "seeded" if engine.info.honours_seeds else "unseeded (runs will not repeat)"
        return (f"engine: {settings.engine} at {settings.engine_url}, model "
                f"{engine.info.model}, {seeds}; health generation ok"
                + kv_pool_warning(getattr(engine, "kv_pool_tokens", 0), in_flight))
    finally:
        engine.close()
