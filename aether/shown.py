"""Bytes values shown to people, the same way by the CLI and the daemon's diff
text: printable UTF-8 as JSON text, anything else as `base64:...` (which
`aether fs setattr --set-base64` takes back)."""

from __future__ import annotations

import base64
import json


def shown(value: bytes) -> str:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and text.isprintable():
        return json.dumps(text, ensure_ascii=False)
    return "base64:" + base64.b64encode(value).decode("ascii")
