"""`/v1/models` objects: installed models as OpenAI's model list.

`created` is when the model was last modified and `owned_by` its namespace (`library`
for official models), as Ollama reports them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

Event = dict[str, Any]


def model_object(model_id: str, namespace: str, modified_at: datetime) -> Event:
    return {
        "id": model_id,
        "object": "model",
        "created": int(modified_at.timestamp()),
        "owned_by": namespace,
    }


def model_list(models: Iterable[Event]) -> Event:
    return {"object": "list", "data": list(models)}
