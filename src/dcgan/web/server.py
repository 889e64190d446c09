"""The web page's server: one HTML page with its own JS and CSS (no CDN, no build step) and a JSON API.

Every request is checked before it reaches the model: sizes, counts, seeds, vector lengths, layer and filter
numbers, and uploads (type, 5 MB, decodable by Pillow). A bad request gets a 4xx answer `{"error": "..."}` with
one sentence saying what was wrong. No request names a file: latent vectors travel in the request body, and the
only files the server reads are its own static assets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException

from dcgan.errors import DcganError
from dcgan.web.explorer import MAX_UPLOAD_BYTES, Explorer, npy_bytes

STATIC = Path(__file__).parent / "static"

#: Limits of a request (a sheet of 256 at 64x64 takes about 2 s on two CPU cores).
MAX_SEED = 2**31 - 1
MAX_SHEET = 256
MAX_SHEET_END = 4096
MAX_GROUP = 32
MAX_STEPS = 64
MAX_PROJECT_STEPS = 1000
MAX_BODY_BYTES = MAX_UPLOAD_BYTES + 64 * 1024  # an upload plus its form fields; JSON bodies are far smaller
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")

#: One latent coordinate: a finite number; priors live in [-1, 1] or a few standard deviations of 0.
Coordinate = Annotated[float, Field(ge=-100, le=100, allow_inf_nan=False)]
Vector = Annotated[list[Coordinate], Field(min_length=1, max_length=4096)]
Group = Annotated[list[Vector], Field(min_length=1, max_length=MAX_GROUP)]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
Steps = Annotated[int, Field(ge=2, le=MAX_STEPS)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SheetRequest(Strict):
    seed: Seed = 0
    start: int = Field(0, ge=0)
    n: int = Field(64, ge=1, le=MAX_SHEET)

    @model_validator(mode="after")
    def _within_sheet(self) -> SheetRequest:
        if self.start + self.n > MAX_SHEET_END:
            raise ValueError(f"start + n must be at most {MAX_SHEET_END}")
        return self


class ArithmeticRequest(Strict):
    a: Group
    b: Group
    c: Group
    noise: float = Field(0.25, ge=0, le=2, allow_inf_nan=False)
    seed: Seed = 0


class WalkRequest(Strict):
    z0: Vector
    z1: Vector
    steps: Steps = 17
    method: Literal["linear", "slerp"] = "linear"


class DirectionRequest(Strict):
    a: Group
    b: Group
    start: Vector
    steps: Steps = 17
    span: float = Field(1.5, gt=0, le=5, allow_inf_nan=False)


class FiltersRequest(Strict):
    z: Annotated[list[Vector], Field(min_length=1, max_length=64)]
    layer: int = Field(ge=0, le=64)
    filters: Annotated[list[Annotated[int, Field(ge=0)]], Field(max_length=8192)]


class NpyRequest(Strict):
    z: Annotated[list[Vector], Field(min_length=1, max_length=MAX_SHEET_END)]
    name: str = Field("z", pattern=r"^[A-Za-z0-9_-]{1,64}$")


def create_app(explorer: Explorer, *, local_only: bool = False) -> FastAPI:
    """The FastAPI app serving the page for `explorer`'s generator; run it with uvicorn (`dcgan serve` does).

    With `local_only`, requests must name this machine in their Host header (127.0.0.1, localhost or [::1]), so
    that a web page elsewhere cannot reach the server through a DNS name that it points at 127.0.0.1.
    """
    app = FastAPI(title="dcgan explorer", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    app.state.explorer = explorer

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        if local_only and not is_local(host_name(request.headers.get("host", ""))):
            return error(421, "This server answers only requests addressed to 127.0.0.1 or localhost.")
        if request.method == "POST":
            length = request.headers.get("content-length")
            if length is None or not length.isdigit():
                return error(411, "Send the request with a Content-Length header.")
            if int(length) > MAX_BODY_BYTES:
                return error(413, f"The request is {int(length) / 2**20:.1f} MB; the limit is 5 MB.")
        return await call_next(request)  # type: ignore[no-any-return]

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(422, "; ".join(describe(e) for e in exc.errors()[:3]) + ".")

    @app.exception_handler(DcganError)
    async def refused(request: Request, exc: DcganError) -> JSONResponse:
        return error(400, str(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        limits = {"sheet": MAX_SHEET, "sheet_end": MAX_SHEET_END, "group": MAX_GROUP, "steps": MAX_STEPS,
                  "project_steps": MAX_PROJECT_STEPS, "upload_mb": MAX_UPLOAD_BYTES // 2**20}  # fmt: skip
        return explorer.info() | {"limits": limits}

    @app.post("/api/sheet")
    def sheet(req: SheetRequest) -> dict[str, Any]:
        return explorer.sheet(req.seed, req.start, req.n)

    @app.post("/api/sheet.png")
    def sheet_png(req: SheetRequest) -> dict[str, Any]:
        return {"image": explorer.sheet_png(req.seed, req.start, req.n)}

    @app.post("/api/arithmetic")
    def arithmetic(req: ArithmeticRequest) -> dict[str, Any]:
        return explorer.arithmetic(req.a, req.b, req.c, req.noise, req.seed)

    @app.post("/api/walk")
    def walk(req: WalkRequest) -> dict[str, Any]:
        return explorer.walk(req.z0, req.z1, req.steps, req.method)

    @app.post("/api/direction")
    def direction(req: DirectionRequest) -> dict[str, Any]:
        return explorer.direction(req.a, req.b, req.start, req.steps, req.span)

    @app.post("/api/filters")
    def filters(req: FiltersRequest) -> dict[str, Any]:
        return explorer.drop(req.z, req.layer, req.filters)

    @app.post("/api/project")
    def project(
        file: Annotated[UploadFile, File(description="an image: PNG, JPEG, WebP, GIF, BMP or TIFF, at most 5 MB")],
        steps: Annotated[int, Form(ge=1, le=MAX_PROJECT_STEPS)] = 100,
        restarts: Annotated[int, Form(ge=1, le=8)] = 2,
        seed: Annotated[int, Form(ge=0, le=MAX_SEED)] = 0,
    ) -> dict[str, Any]:
        kind = (file.content_type or "").split(";")[0].strip().lower()
        if not (kind.startswith("image/") or kind in ("", "application/octet-stream")):
            raise HTTPException(415, f"The upload is {kind}; send an image (PNG, JPEG, WebP, GIF, BMP or TIFF).")
        if steps * restarts > MAX_PROJECT_STEPS * 2:
            raise HTTPException(
                422, f"steps x restarts must be at most {MAX_PROJECT_STEPS * 2}, got {steps * restarts}."
            )
        data = file.file.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise HTTPException(413, f"The upload is over {MAX_UPLOAD_BYTES // 2**20} MB, the limit.")
        return explorer.project_upload(data, steps, restarts, seed)

    @app.post("/api/z.npy")
    def z_file(req: NpyRequest) -> Response:
        data = npy_bytes(explorer.vectors(req.z, "z"))
        headers = {"Content-Disposition": f'attachment; filename="{req.name}.npy"'}
        return Response(data, media_type="application/octet-stream", headers=headers)

    return app


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def describe(problem: Any) -> str:
    """One pydantic error as "where: what", e.g. "seed: Input should be greater than or equal to 0"."""
    where = ".".join(str(part) for part in problem.get("loc", ()) if part not in ("body", "query", "path"))
    message = str(problem.get("msg", "is invalid")).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def host_name(header: str) -> str:
    """The host of a Host header, without its port: "127.0.0.1:8000" -> "127.0.0.1", "[::1]:80" -> "::1"."""
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


def is_local(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    return host in LOCAL_HOSTS or host.startswith("127.")
