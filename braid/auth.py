"""Bearer tokens of Braid's HTTP APIs: a read token may query, the write token may also send events.

With no token configured the APIs are open (a local stack). With one configured, a request without a token or with an
unknown one gets 401 and a `WWW-Authenticate: Bearer` challenge (RFC 6750); a read token on a write path gets 403.
Tokens are compared in constant time and never logged, echoed or put in an error message.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from enum import IntEnum

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr

from braid.settings import Settings


class Access(IntEnum):
    """What a token allows; a higher level includes the lower ones."""

    READ = 1
    WRITE = 2


@dataclass(frozen=True)
class ApiTokens:
    read: SecretStr | None = None
    write: SecretStr | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiTokens:
        return cls(read=settings.api_read_token, write=settings.api_write_token)

    @property
    def enabled(self) -> bool:
        return self.read is not None or self.write is not None

    def access(self, authorization: str | None) -> Access | None:
        """The access an `Authorization` header grants: None for no header, another scheme, or an unknown token."""
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return None
        offered = given.strip().encode()
        # Both comparisons always run, so the time taken does not tell which token (if any) came close.
        is_write = self.write is not None and hmac.compare_digest(offered, self.write.get_secret_value().encode())
        is_read = self.read is not None and hmac.compare_digest(offered, self.read.get_secret_value().encode())
        return Access.WRITE if is_write else Access.READ if is_read else None


class Refused(Exception):
    """A request without the access its path needs; turned into a 401 or 403 by `refusal_response`."""

    def __init__(self, status: int, reason: str, challenge: str) -> None:
        super().__init__(reason)
        self.status, self.reason, self.challenge = status, reason, challenge


def requirement(tokens: ApiTokens, needed: Access):
    """A FastAPI dependency that lets a request through only with a token granting `needed` (always, with no tokens)."""
    scope = "write" if needed is Access.WRITE else "read"

    def check(request: Request) -> None:
        if not tokens.enabled:
            return
        header = request.headers.get("authorization")
        granted = tokens.access(header)
        if granted is None:
            if header:
                raise Refused(401, "the bearer token is missing or not valid", f'Bearer realm="braid", error="invalid_token", scope="{scope}"')
            raise Refused(401, "this path needs an 'Authorization: Bearer <token>' header", f'Bearer realm="braid", scope="{scope}"')
        if granted < needed:
            reason = f"this token may only read; {request.method} {request.url.path} needs the write token"
            raise Refused(403, reason, f'Bearer realm="braid", error="insufficient_scope", scope="{scope}"')

    return check


async def refusal_response(request: Request, error: Exception) -> JSONResponse:
    """The exception handler for `Refused`: the reason as JSON (as every error of the APIs) and the challenge."""
    assert isinstance(error, Refused)
    return JSONResponse({"error": error.reason}, status_code=error.status, headers={"WWW-Authenticate": error.challenge})
