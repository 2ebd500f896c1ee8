"""Secrets: recipes name environment variables (``*_env`` params) and never hold a secret's value.

``refuse_literal_secrets`` rejects a recipe that holds a key, token or password directly: in a
param named like one, or as credentials in a URL (``http://user:pass@host``, ``?api_key=...``).
So no secret is ever in what loopkit writes of its own (recipe.yaml, summaries, prompts).

The only way a secret can come in is text from outside: a backend that echoes the key in a reply
or an error message. ``remember_recipe_secrets`` collects the values of the environment variables
a recipe names, and ``redact`` masks them in such text where it enters (a teacher's replies and
errors, an error line), leaving every other character alone. A value shorter than
``MIN_MASKED`` is not masked: it would also mask ordinary words (a local server's key is often
``EMPTY`` or ``test``), and a value that short protects nothing.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

MASK = "***"
MIN_MASKED = 8
_SECRET_NAME = re.compile(
    r"(^|[_-])(api[_-]?key|key|token|secret|password|passwd|pwd|passphrase|credentials?|auth|authorization|signature|sig)$",
    re.IGNORECASE)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")
_known: set[str] = set()


def _walk(value: Any, path: str):
    """(dotted path, value) of every leaf; a container met twice (a YAML alias) is walked once."""
    seen: set[int] = set()
    todo = [(path, value)]
    while todo:
        path, value = todo.pop()
        if isinstance(value, (dict, list)):
            if id(value) in seen:
                continue
            seen.add(id(value))
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, inner in reversed(list(items)):
                if isinstance(value, list):
                    todo.append((f"{path}[{key}]", inner))
                else:
                    todo.append((f"{path}.{key}" if path else str(key), inner))
        else:
            yield path, value


def _url_credentials(text: str) -> str | None:
    """What a URL in ``text`` holds that is a credential (never its value), else None."""
    for match in _URL.finditer(text):
        try:
            parts = urlsplit(match.group())
            has_user = "@" in parts.netloc
            query = parse_qsl(parts.query, keep_blank_values=False)
        except ValueError:  # not a URL after all (an odd port, a bad IPv6 literal)
            continue
        if has_user:
            return "user:password@ before the host"
        for name, value in query:
            if _SECRET_NAME.search(name) and value:
                return f"{name}= in its query"
    return None


def refuse_literal_secrets(params: Any, where: str = "") -> str | None:
    """A one-line complaint if ``params`` holds a secret literally (it names the field, never the value), else None."""
    for path, value in _walk(params, where):
        if not isinstance(value, str) or not value:
            continue
        name = path.rsplit(".", 1)[-1]
        if _SECRET_NAME.search(name):
            return (f"{path}: a recipe must not hold a secret; put it in an environment variable and name "
                    f"the variable instead (e.g. api_key_env: OPENAI_API_KEY)")
        found = _url_credentials(value)
        if found:
            return (f"{path}: a URL in a recipe must not hold credentials ({found}); remove them, put the key in "
                    f"an environment variable and name the variable instead (e.g. api_key_env: OPENAI_API_KEY)")
    return None


def remember(secret: str | None) -> None:
    """Mask ``secret`` in outside text from now on (a component calls this with each secret it reads)."""
    if secret and len(secret) >= MIN_MASKED:
        _known.add(secret)


def remember_recipe_secrets(params: Any) -> None:
    """Remember the values of the environment variables named by ``*_env`` params (to mask them in outside text)."""
    for path, value in _walk(params, ""):
        if path.rsplit(".", 1)[-1].endswith("_env") and isinstance(value, str):
            remember(os.environ.get(value))


def redact(text: str) -> str:
    """``text`` from outside (a reply, an error) with every remembered secret replaced by ``***``."""
    for secret in _known:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def masked_override(item: str) -> str:
    """A ``--set key=value`` as a record may keep it: the value masked if the key is named like a secret or the value
    holds URL credentials, and any remembered secret masked."""
    key, sep, value = item.partition("=")
    if sep and (_SECRET_NAME.search(key.strip().rsplit(".", 1)[-1]) or _url_credentials(value)):
        return f"{key}={MASK}"
    return redact(item)


def masked_command(args: list[str]) -> list[str]:
    """A command line as a record may keep it: each ``--set`` value through ``masked_override``."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg.startswith("--set="):
            out.append("--set=" + masked_override(arg.removeprefix("--set=")))
        elif i > 0 and args[i - 1] == "--set":
            out.append(masked_override(arg))
        else:
            out.append(redact(arg) if not _url_credentials(arg) else MASK)
    return out
