"""Chat messages to the prompt text a model expects.

"gguf" renders the Jinja chat template stored in the model file (what the
model was trained with). "completion" is for base models: a plain transcript
ending in "Assistant:", plus a stop sequence so the model does not go on to
write the user's next turn itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rationer.errors import InvalidArgument

ROLES = ("system", "user", "assistant")
_COMPLETION_NAMES = {"system": "System", "user": "User", "assistant": "Assistant"}


@dataclass(frozen=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True)
class RenderedPrompt:
    text: str
    # Extra stop sequences implied by the format (added to the caller's).
    stops: list[str] = field(default_factory=list)
    # A chat template writes its own BOS text; a plain transcript needs the
    # tokenizer to add the model's BOS (base models degrade badly without it).
    add_bos: bool = False


class PromptFormat:
    """Renders messages for one model; ``name`` is "gguf" or "completion"."""

    def __init__(self, name: str, metadata: dict[str, str], eos_token: str, bos_token: str) -> None:
        template = metadata.get("tokenizer.chat_template")
        if name == "auto":
            name = "gguf" if template else "completion"
        if name == "gguf" and not template:
            raise InvalidArgument("chat_format 'gguf' needs a chat template in the model file; use 'completion'")
        self.name = name
        self._jinja: Any = None
        if name == "gguf":
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            self._jinja = Jinja2ChatFormatter(template=str(template), eos_token=eos_token, bos_token=bos_token)

    def render(self, messages: list[Message]) -> RenderedPrompt:
        if self._jinja is not None:
            try:
                out = self._jinja(messages=[{"role": m.role, "content": m.content} for m in messages])
            except ValueError as exc:  # the template's raise_exception(), e.g. bad role order
                raise InvalidArgument(f"the model's chat template rejected the messages: {exc}") from exc
            return RenderedPrompt(text=out.prompt)
        return render_completion(messages)


def render_completion(messages: list[Message]) -> RenderedPrompt:
    lines = [f"{_COMPLETION_NAMES[m.role]}: {m.content.strip()}" for m in messages]
    return RenderedPrompt(text="\n\n".join(lines) + "\n\nAssistant:", stops=["\nUser:", "\nSystem:"], add_bos=True)
