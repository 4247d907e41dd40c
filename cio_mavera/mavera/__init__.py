"""Mavera: the client, its credits ledger and budget, and the response cache."""

from .budget import DEFAULT_WORST_CASE, CreditBudget
from .client import DEFAULT_MODEL, MaveraClient
from .errors import (
    DuplicateName,
    FocusGroupTimeout,
    Forbidden,
    InvalidRequest,
    PiiBlocked,
    StructuredOutputError,
)
from .ledger import CreditsLedger, credits_spent, read_ledger
from .models import ChatResult, FocusGroupResult, GenerationResult, MaveResult, ResponseResult

__all__ = [
    "DEFAULT_MODEL", "DEFAULT_WORST_CASE", "ChatResult", "CreditBudget", "CreditsLedger",
    "DuplicateName", "FocusGroupResult", "FocusGroupTimeout", "Forbidden", "GenerationResult",
    "InvalidRequest", "MaveResult", "MaveraClient", "PiiBlocked", "ResponseResult",
    "StructuredOutputError", "credits_spent", "read_ledger",
]
