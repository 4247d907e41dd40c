"""GET /usage: credits, requests and tokens of the sandbox account in the documented shape."""

from __future__ import annotations

import datetime as dt

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .resource import Resource


class Usage(Resource):
    name = "/usage"

    async def get(self, request: Request) -> Response:
        today = dt.datetime.now(dt.UTC)
        start = today.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (start + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(milliseconds=1)
        account = self.account
        with account.lock:
            included = int(self.sandbox.config.mavera_credits)
            used = account.credits_used
            by_endpoint = {name: {"requests": u.requests, "errors": u.errors, "credits_used": u.credits_used,
                                  "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens}
                           for name, u in sorted(account.usage.items())}
            requests = sum(u.requests for u in account.usage.values()) + 1  # this request
            prompt = sum(u.prompt_tokens for u in account.usage.values())
            completion = sum(u.completion_tokens for u in account.usage.values())
            errors = sum(u.errors for u in account.usage.values())
            balance = account.balance

        def iso(moment: dt.datetime) -> str:
            return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

        return JSONResponse({
            "object": "usage",
            "billing_period": {"start": iso(start), "end": iso(end)},
            "credits": {"used": used, "included": included, "remaining": balance,
                        "percentage_used": round(100 * used / included, 1) if included else 100},
            "transcription": {"minutes_used": 0, "minutes_included": 0, "minutes_remaining": 0,
                              "percentage_used": 0},
            "storage": {"gb_used": 0, "gb_included": 0, "gb_remaining": 0, "percentage_used": 0},
            "api_requests": {"total_requests": requests, "total_tokens": prompt + completion,
                             "prompt_tokens": prompt, "completion_tokens": completion,
                             "credits_used": used, "error_count": errors, "avg_latency_ms": 0},
            "rate_limit": {"requests_per_minute": account.rate.limit},
            "auto_recharge": {"enabled": False, "threshold": 0, "credits_to_add": 0},
            "limits": {"budget_alert": None, "usage_limit": None},
            "by_endpoint": by_endpoint,  # sandbox extension, not in the documented shape
            "sandbox": True,
        })
