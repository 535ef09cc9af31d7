"""Request dependencies: the app's settings, one session per request, the caller's identity
and the Celery app (all held on app.state, so tests build an app with their own)."""

import hmac
from collections.abc import Iterator
from typing import Annotated

from celery import Celery
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from ttcq.db.session import session_scope
from ttcq.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="an API token from TTCQ_API_TOKENS")


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_db(settings: SettingsDep) -> Iterator[Session]:
    yield from session_scope(settings.database_url)


SessionDep = Annotated[Session, Depends(get_db)]


def get_celery(request: Request) -> Celery:
    app: Celery = request.app.state.celery
    return app


CeleryDep = Annotated[Celery, Depends(get_celery)]


def get_owner(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The owner the bearer token belongs to; 401 without one or with an unknown one."""
    if credentials is not None:
        offered = credentials.credentials.encode()
        for token, owner in settings.token_owners().items():
            # Constant-time, so response timing does not leak how much of a token matched.
            if hmac.compare_digest(offered, token.encode()):
                return owner
    raise HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail="missing or unknown API token",
        headers={"WWW-Authenticate": "Bearer"},
    )


OwnerDep = Annotated[str, Depends(get_owner)]
