"""The web console: pages served by the API's own app under `/`, drawn in the browser from
the same /v1 endpoints the CLI uses, with the caller's bearer token (kept in the tab's
sessionStorage). The pages carry no data of their own: whoever opens one sees only what
their token's /v1 answers allow, and another owner's batch is "not found" there as in the
API."""

import uuid
from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")  # autoescapes .html
router = APIRouter(include_in_schema=False)


# Scripts only from the console's own files: even a piece of model output that reached the
# page as HTML could not run (the pages set model output as text in the first place).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


def _page(request: Request, template: str, **context: str) -> HTMLResponse:
    response = templates.TemplateResponse(request, template, context)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@router.get("/", response_class=HTMLResponse)
def batches_page(request: Request) -> HTMLResponse:
    return _page(request, "batches.html")


@router.get("/batches/{batch_id}", response_class=HTMLResponse)
def batch_page(request: Request, batch_id: str) -> HTMLResponse:
    return _page(request, "batch.html", batch_id=_id(batch_id))


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str) -> HTMLResponse:
    return _page(request, "job.html", job_id=_id(job_id))


@router.get("/compare", response_class=HTMLResponse)
def compare_page(request: Request, a: str = "", b: str = "") -> HTMLResponse:
    return _page(request, "compare.html", a=a and _id(a), b=b and _id(b))


def _id(value: str) -> str:
    """A batch or job id as the pages put it into API paths: a UUID, or no such page."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise HTTPException(status_code=404, detail=f"no batch or job {value!r}") from None


def mount(app: FastAPI) -> None:
    """Add the console's pages and static files to the API's app."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="console-static")
