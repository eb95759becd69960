"""Chat templates: turn a conversation into the text a continuation model continues.

A template is data (lm/chat_templates.json, or any JSON file of the same shape), not code in the
sampler. Each one gives a pattern per role with one `{content}` placeholder, the text that opens
the assistant's turn (`generation_prompt`), the strings that end the reply (`stop`), and a
default system prompt:

    {"transcript": {"system": "{content}\\n\\n", "user": "User: {content}\\n",
                    "assistant": "Assistant: {content}\\n", "generation_prompt": "Assistant:",
                    "stop": ["\\nUser:"], "default_system": "...", "description": "..."}}

`render(messages)` -> prompt text; `reply(continuation)` -> the reply cut at the first stop string.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Mapping, Sequence

TEMPLATES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "chat_templates.json")
DEFAULT_TEMPLATE = "transcript"
ROLES = ("system", "user", "assistant")
PLACEHOLDER = "{content}"


@dataclasses.dataclass(frozen=True)
class ChatTemplate:
    name: str
    system: str
    """Pattern of the system prompt, with one {content}."""
    user: str
    """Pattern of a user turn."""
    assistant: str
    """Pattern of a (finished) assistant turn."""
    generation_prompt: str
    """Text that opens the assistant turn the model is to write."""
    stop: tuple[str, ...]
    """Strings that end the reply (the first one found cuts it)."""
    default_system: str | None = None
    """System prompt used when the conversation has none (None: no system text)."""
    description: str = ""

    def render(self, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool = True,
               system: str | None = None) -> str:
        """The prompt text of `messages` ([{"role": "system"|"user"|"assistant", "content": str}]):
        the system prompt (the conversation's own, else `system`, else the template's default),
        then each turn, then the generation prompt."""
        messages = check_messages(messages)
        if messages and messages[0]["role"] == "system":
            system, messages = messages[0]["content"], messages[1:]
        elif system is None:
            system = self.default_system
        parts = [self.system.replace(PLACEHOLDER, system)] if system else []
        for m in messages:
            parts.append(getattr(self, m["role"]).replace(PLACEHOLDER, m["content"]))
        if add_generation_prompt:
            parts.append(self.generation_prompt)
        return "".join(parts)

    def reply(self, continuation: str) -> tuple[str, bool]:
        """(the assistant's reply: `continuation` cut at the first stop string and stripped of
        surrounding whitespace, whether a stop string was found)."""
        text, stopped = cut_at_stop(continuation, self.stop)
        return text.strip(), stopped


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """`text` up to the earliest occurrence of any of `stops`, and whether one occurred."""
    cuts = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return (text[:min(cuts)], True) if cuts else (text, False)


def check_messages(messages: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    """Validated copies: known roles, string contents, a system message only first."""
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or set(m) != {"role", "content"}:
            raise ValueError(f"message {i} is {m!r}; each message is {{'role': ..., 'content': ...}}")
        if m["role"] not in ROLES:
            raise ValueError(f"message {i} has role {m['role']!r}; roles are {list(ROLES)}")
        if not isinstance(m["content"], str):
            raise ValueError(f"message {i} has non-text content {m['content']!r}; give a string")
        if m["role"] == "system" and i > 0:
            raise ValueError(f"message {i} is a system message; only the first message may be one")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _from_dict(name: str, d: Mapping) -> ChatTemplate:
    fields = {f.name for f in dataclasses.fields(ChatTemplate)} - {"name"}
    required = {"system", "user", "assistant", "generation_prompt", "stop"}
    missing, unknown = sorted(required - set(d)), sorted(set(d) - fields)
    if missing or unknown:
        raise ValueError(f"chat template {name!r}: missing keys {missing}, unknown keys {unknown}; "
                         f"a template has {sorted(fields)}")
    for role in ROLES:
        if d[role].count(PLACEHOLDER) != 1:
            raise ValueError(f"chat template {name!r}: the {role} pattern {d[role]!r} must hold "
                             f"{PLACEHOLDER} exactly once")
    stop = d["stop"]
    if isinstance(stop, str) or not all(isinstance(s, str) and s for s in stop):
        raise ValueError(f"chat template {name!r}: stop must be a list of non-empty strings, got {stop!r}")
    return ChatTemplate(name=name, **{**d, "stop": tuple(stop)})


def load_templates(path: str = TEMPLATES_FILE) -> dict[str, ChatTemplate]:
    """Every template of a JSON file {name: {...}}, validated."""
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{path} must hold a JSON object {{name: template}} with at least one template")
    return {name: _from_dict(name, d) for name, d in raw.items()}


def get_template(name: str = DEFAULT_TEMPLATE) -> ChatTemplate:
    """A built-in template by name, or the only/first template of a JSON file `name`."""
    if name.endswith(".json") or os.path.sep in name:
        if not os.path.isfile(name):
            raise ValueError(f"no chat template file {name!r}; give a built-in name or an existing JSON file")
        return next(iter(load_templates(name).values()))
    templates = load_templates()
    if name not in templates:
        raise ValueError(f"unknown chat template {name!r}; built-in templates: {sorted(templates)} "
                         "(or give a JSON file of the same shape)")
    return templates[name]
