"""Mavera: the client (resource namespaces over one metered core), its credits ledger and budget,
and the response cache."""

from .budget import DEFAULT_WORST_CASE, CreditBudget
from .client import MaveraClient
from .errors import (
    DuplicateName,
    FocusGroupTimeout,
    Forbidden,
    InvalidRequest,
    PiiBlocked,
    StructuredOutputError,
)
from .ledger import CreditsLedger, credits_spent, read_ledger
from .listing_cache import LISTING_MAX_AGE
from .models import ChatResult, FocusGroupResult, GenerationResult, MaveResult, ResponseResult
from .resources.chat import DEFAULT_MODEL

__all__ = [
    "DEFAULT_MODEL", "DEFAULT_WORST_CASE", "LISTING_MAX_AGE", "ChatResult", "CreditBudget",
    "CreditsLedger", "DuplicateName", "FocusGroupResult", "FocusGroupTimeout", "Forbidden",
    "GenerationResult", "InvalidRequest", "MaveResult", "MaveraClient", "PiiBlocked",
    "ResponseResult", "StructuredOutputError", "credits_spent", "read_ledger",
]
