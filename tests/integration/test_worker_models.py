"""The default model pair on one worker: SmolLM2 (chat template) and Gemma 3 base (completion format)."""

from __future__ import annotations

from services.slm_worker.client import ChatMessage, GenerationParams
from services.slm_worker.settings import WorkerSettings, default_models
from testsupport.slm_worker import running_worker


async def test_default_models_serve_by_tier_with_their_prompt_formats() -> None:
    models = [m.model_copy(update={"n_ctx": 256, "slots": 1}) for m in default_models()]
    async with running_worker(WorkerSettings(models=models)) as w:
        listed = {m.tier: m for m in (await w.client.list_models()).models}
        assert (listed["local-small"].chat_format, listed["local-large"].chat_format) == ("gguf", "completion")
        assert listed["local-large"].quantization == "Q4_K_M"
        question = [ChatMessage("user", "What is the capital of France?")]
        out = await w.client.generate("local-large", question, GenerationParams(max_tokens=24, temperature=0.0))
        assert out.model == "gemma3-270m"
        assert "Paris" in out.text
        # The transcript format's implicit stop keeps the base model from
        # writing the user's next turn.
        assert "User:" not in out.text
        small = await w.client.generate("local-small", question, GenerationParams(max_tokens=4))
        assert small.model == "smollm2-135m-instruct"
        # Counting follows each model's own template and tokenizer.
        assert await w.client.count_tokens("local-small", question) != await w.client.count_tokens(
            "local-large", question
        )
