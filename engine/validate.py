"""Validation (placeholder until the schema checks land)."""
from __future__ import annotations
from .errors import Diagnostic
def check_document(doc) -> list[Diagnostic]:
    return []
def check_resolved(res) -> list[Diagnostic]:
    return []
