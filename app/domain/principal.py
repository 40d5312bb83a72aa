"""Who is calling: the customer a management key belongs to."""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    customer_id: uuid.UUID
    key_id: str
    is_admin: bool = False
    plan: str = "free"
