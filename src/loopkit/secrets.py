"""Secrets: recipes name environment variables (``*_env`` params) and never hold a secret's value.

``refuse_literal_secrets`` rejects a recipe whose params hold a key, token or password directly.
``remember_recipe_secrets`` collects the values of every environment variable a recipe names with
a ``*_env`` param; ``redact`` replaces them in any text loopkit writes (run-directory files, the
journal, messages), so a key that a backend echoes back still never reaches a file or a log.
"""

from __future__ import annotations

import os
import re
from typing import Any

MASK = "***"
_SECRET_NAME = re.compile(r"(^|_)(api_?key|key|token|secret|password|passwd)$", re.IGNORECASE)
_known: set[str] = set()


def _walk(value: Any, path: str):
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _walk(inner, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from _walk(inner, f"{path}[{i}]")
    else:
        yield path, value


def refuse_literal_secrets(params: dict[str, Any], where: str) -> str | None:
    """A one-line complaint if a param looks like a secret given literally, else None."""
    for path, value in _walk(params, where):
        name = path.rsplit(".", 1)[-1]
        if _SECRET_NAME.search(name) and isinstance(value, str) and value:
            return (f"{path}: a recipe must not hold a secret; put it in an environment variable and name "
                    f"the variable instead (e.g. api_key_env: OPENAI_API_KEY)")
    return None


def remember_recipe_secrets(params: dict[str, Any]) -> None:
    """Remember the values of the environment variables named by ``*_env`` params (to redact them)."""
    for path, value in _walk(params, ""):
        if path.rsplit(".", 1)[-1].endswith("_env") and isinstance(value, str):
            secret = os.environ.get(value)
            if secret and len(secret) >= 4:  # shorter values would mask ordinary text
                _known.add(secret)


def redact(text: str) -> str:
    for secret in _known:
        if secret in text:
            text = text.replace(secret, MASK)
    return text
