"""Whether the Hugging Face Hub answers from here (a model or dataset not cached locally needs it)."""

from __future__ import annotations

import os
import socket


def reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False
