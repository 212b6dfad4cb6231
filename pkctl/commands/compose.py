"""`pkctl compose ...`: see pkctl/compose/."""
from __future__ import annotations

from ..compose.commands import register

__all__ = ["register"]
