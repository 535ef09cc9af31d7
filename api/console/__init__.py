"""The web console: pages served by the API's own app under `/`, drawn in the browser from
the same /v1 endpoints the CLI uses, with the caller's bearer token (kept in the tab's
sessionStorage). The pages carry no data of their own: whoever opens one sees only what
their token's /v1 answers allow, and another owner's batch is "not found" there as in the
API."""

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")  # autoescapes .html
router = APIRouter(include_in_schema=False)


def _page(request: Request, template: str, **context: str) -> HTMLResponse:
    return templates.TemplateResponse(request, template, context)


@router.get("/", response_class=HTMLResponse)
def batches_page(request: Request) -> HTMLResponse:
    return _page(request, "batches.html")


@router.get("/batches/{batch_id}", response_class=HTMLResponse)
def batch_page(request: Request, batch_id: str) -> HTMLResponse:
    return _page(request, "batch.html", batch_id=batch_id)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str) -> HTMLResponse:
    return _page(request, "job.html", job_id=job_id)


@router.get("/compare", response_class=HTMLResponse)
def compare_page(request: Request, a: str = "", b: str = "") -> HTMLResponse:
    return _page(request, "compare.html", a=a, b=b)


def mount(app: FastAPI) -> None:
    """Add the console's pages and static files to the API's app."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="console-static")
