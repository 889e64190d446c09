"""The web page's server: one HTML page with its own JS and CSS (no CDN, no build step) and a JSON API.

Every request is checked before it reaches the model: sizes, counts, seeds, vector lengths, layer and filter
numbers, classes (a class-conditional generator's requests name one; an unconditional one's may not), and
uploads (type, 5 MB, decodable by Pillow). A bad request gets a 4xx answer `{"error": "..."}` with
one sentence saying what was wrong. No request names a file: latent vectors travel in the request body, and the
only files the server reads are its own static assets.

The event loop only parses, checks and routes: every request that runs G goes to a worker thread of a bounded
`Lane` (`dcgan.web.limits`), which also turns its answer into JSON bytes there, so `/api/info` and the page are
answered at once while the workers are busy. A full lane answers 503 with Retry-After; a request past its time
limit, 504.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
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
from dcgan.web.limits import Lane, Overloaded, ServerLimits, TimeLimitExceeded

STATIC = Path(__file__).parent / "static"

#: Limits of a request (a sheet of 256 at 64x64 takes about 2 s on two CPU cores).
MAX_SEED = 2**31 - 1
MAX_SHEET = 256
MAX_SHEET_END = 4096
MAX_GROUP = 32
MAX_STEPS = 64
MAX_PROJECT_STEPS = 1000
#: Most images one "same z in every class" request draws (classes x vectors).
MAX_EVERY_CLASS = 1024
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


#: A class of a conditional generator, by name or id; the explorer checks it against the generator's classes.
ClassName = Annotated[str, Field(min_length=1, max_length=200)] | int | None


class InClass(Strict):
    """A request that draws: for a class-conditional generator it names the class (JSON key `class`)."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)
    klass: ClassName = Field(None, alias="class")


class SheetRequest(InClass):
    seed: Seed = 0
    start: int = Field(0, ge=0)
    n: int = Field(64, ge=1, le=MAX_SHEET)

    @model_validator(mode="after")
    def _within_sheet(self) -> SheetRequest:
        if self.start + self.n > MAX_SHEET_END:
            raise ValueError(f"start + n must be at most {MAX_SHEET_END}")
        return self


class ArithmeticRequest(InClass):
    a: Group
    b: Group
    c: Group
    noise: float = Field(0.25, ge=0, le=2, allow_inf_nan=False)
    seed: Seed = 0


class WalkRequest(InClass):
    z0: Vector
    z1: Vector
    steps: Steps = 17
    method: Literal["linear", "slerp"] = "linear"


class DirectionRequest(InClass):
    a: Group
    b: Group
    start: Vector
    steps: Steps = 17
    span: float = Field(1.5, gt=0, le=5, allow_inf_nan=False)


class FiltersRequest(InClass):
    z: Annotated[list[Vector], Field(min_length=1, max_length=64)]
    layer: int = Field(ge=0, le=64)
    filters: Annotated[list[Annotated[int, Field(ge=0)]], Field(max_length=8192)]


class ClassesRequest(Strict):
    z: Annotated[list[Vector], Field(min_length=1, max_length=MAX_GROUP)]


class NpyRequest(Strict):
    z: Annotated[list[Vector], Field(min_length=1, max_length=MAX_SHEET_END)]
    name: str = Field("z", pattern=r"^[A-Za-z0-9_-]{1,64}$")


def create_app(explorer: Explorer, *, local_only: bool = False, limits: ServerLimits | None = None) -> FastAPI:
    """The FastAPI app serving the page for `explorer`'s generator; run it with uvicorn (`dcgan serve` does).

    With `local_only`, requests must name this machine in their Host header (127.0.0.1, localhost or [::1]), so
    that a web page elsewhere cannot reach the server through a DNS name that it points at 127.0.0.1. `limits`
    bounds the work taken on at once (default `ServerLimits()`); `app.state.lanes` holds its two lanes.
    """
    limits = limits or ServerLimits()
    lanes = {
        "generate": Lane("generate", "request", limits.workers, limits.queue, limits.timeout_s),
        "project": Lane("project", "projection", 1, limits.project_queue, limits.project_timeout_s),
    }

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        for lane in lanes.values():
            lane.shutdown()

    app = FastAPI(title="dcgan explorer", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json", lifespan=lifespan)  # fmt: skip
    app.state.explorer = explorer
    app.state.limits = limits
    app.state.lanes = lanes
    request_limits = {"sheet": MAX_SHEET, "sheet_end": MAX_SHEET_END, "group": MAX_GROUP, "steps": MAX_STEPS,
                      "project_steps": MAX_PROJECT_STEPS, "upload_mb": MAX_UPLOAD_BYTES // 2**20,
                      "every_class": MAX_EVERY_CLASS,
                      "timeout_s": limits.timeout_s, "project_timeout_s": limits.project_timeout_s}  # fmt: skip
    facts = explorer.info() | {"limits": request_limits}  # fixed for the server's life: computed once

    async def answer(lane: str, work: Callable[..., Any], *args: Any) -> Response:
        """work(*args) on a worker of `lane`, its answer encoded as JSON there too (off the event loop)."""
        body = await lanes[lane].run(lambda: json_bytes(work(*args)))
        return Response(body, media_type="application/json")

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        start = time.perf_counter()
        if local_only and not is_local(host_name(request.headers.get("host", ""))):
            return error(421, "This server answers only requests addressed to 127.0.0.1 or localhost.")
        if request.method == "POST":
            length = request.headers.get("content-length")
            if length is None or not length.isdigit():
                return error(411, "Send the request with a Content-Length header.")
            if int(length) > MAX_BODY_BYTES:
                return error(413, f"The request is {int(length) / 2**20:.1f} MB; the limit is 5 MB.")
            # Every POST runs on a lane: refuse it now if that lane is full, before its body is parsed (an image
            # upload's multipart parsing took seconds under load, only to be refused). The body is still read
            # off the connection, unparsed: answered without it, the connection would close under a client
            # that keeps it alive for its next request (a ReadError there in benchmarks/web_load.py).
            lane = lanes["project" if request.url.path == "/api/project" else "generate"]
            if lane.full:
                await request.body()
                return timed(busy(lane.overloaded()), start)
        return timed(await call_next(request), start)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(422, "; ".join(describe(e) for e in exc.errors()[:3]) + ".")

    @app.exception_handler(DcganError)
    async def refused(request: Request, exc: DcganError) -> JSONResponse:
        return error(400, str(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, exc: Overloaded) -> JSONResponse:
        return busy(exc)

    @app.exception_handler(TimeLimitExceeded)
    async def too_slow(request: Request, exc: TimeLimitExceeded) -> JSONResponse:
        return error(504, str(exc))

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/info")
    async def info() -> dict[str, Any]:
        """Answered on the event loop from facts computed once and the lanes' counters: never behind G."""
        return facts | {"load": {name: lane.state() for name, lane in lanes.items()}}

    @app.post("/api/sheet")
    async def sheet(req: SheetRequest) -> Response:
        return await answer("generate", explorer.sheet, req.seed, req.start, req.n, req.klass)

    @app.post("/api/sheet.png")
    async def sheet_png(req: SheetRequest) -> Response:
        return await answer("generate", lambda: {"image": explorer.sheet_png(req.seed, req.start, req.n, req.klass)})

    @app.post("/api/arithmetic")
    async def arithmetic(req: ArithmeticRequest) -> Response:
        return await answer("generate", explorer.arithmetic, req.a, req.b, req.c, req.noise, req.seed, req.klass)

    @app.post("/api/walk")
    async def walk(req: WalkRequest) -> Response:
        return await answer("generate", explorer.walk, req.z0, req.z1, req.steps, req.method, req.klass)

    @app.post("/api/direction")
    async def direction(req: DirectionRequest) -> Response:
        return await answer("generate", explorer.direction, req.a, req.b, req.start, req.steps, req.span, req.klass)

    @app.post("/api/filters")
    async def filters(req: FiltersRequest) -> Response:
        return await answer("generate", explorer.drop, req.z, req.layer, req.filters, req.klass)

    @app.post("/api/classes")
    async def classes(req: ClassesRequest) -> Response:
        count = max(1, len(facts["classes"])) * len(req.z)
        if count > MAX_EVERY_CLASS:
            raise HTTPException(
                422, f"{len(req.z)} vectors in {len(facts['classes'])} classes are {count} images; the limit is "
                f"{MAX_EVERY_CLASS}."
            )  # fmt: skip
        return await answer("generate", explorer.classes, req.z)

    @app.post("/api/project")
    async def project(
        file: Annotated[UploadFile, File(description="an image: PNG, JPEG, WebP, GIF, BMP or TIFF, at most 5 MB")],
        steps: Annotated[int, Form(ge=1, le=MAX_PROJECT_STEPS)] = 100,
        restarts: Annotated[int, Form(ge=1, le=8)] = 2,
        seed: Annotated[int, Form(ge=0, le=MAX_SEED)] = 0,
        klass: Annotated[str | None, Form(alias="class", max_length=200)] = None,
    ) -> Response:
        kind = (file.content_type or "").split(";")[0].strip().lower()
        if not (kind.startswith("image/") or kind in ("", "application/octet-stream")):
            raise HTTPException(415, f"The upload is {kind}; send an image (PNG, JPEG, WebP, GIF, BMP or TIFF).")
        if steps * restarts > MAX_PROJECT_STEPS * 2:
            raise HTTPException(
                422, f"steps x restarts must be at most {MAX_PROJECT_STEPS * 2}, got {steps * restarts}."
            )
        data = await file.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise HTTPException(413, f"The upload is over {MAX_UPLOAD_BYTES // 2**20} MB, the limit.")
        return await answer("project", explorer.project_upload, data, steps, restarts, seed, klass)

    @app.post("/api/z.npy")
    async def z_file(req: NpyRequest) -> Response:
        data = await lanes["generate"].run(lambda: npy_bytes(explorer.vectors(req.z, "z")))
        headers = {"Content-Disposition": f'attachment; filename="{req.name}.npy"'}
        return Response(data, media_type="application/octet-stream", headers=headers)

    return app


def json_bytes(answer: Any) -> bytes:
    """An answer as compact JSON, as FastAPI's JSONResponse writes it (NaN refused: answers never hold one)."""
    return json.dumps(answer, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def timed(response: Response, start: float) -> Response:
    """`response` with the time since `start` inside the server (a wait in a lane's queue included) in its
    Server-Timing header, so a load test can tell it from what its clients and the network add (browsers' dev tools
    show it too)."""
    response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - start) * 1000:.1f}"
    return response


def busy(exc: Overloaded) -> JSONResponse:
    """503 with Retry-After: the server is at its limits for now."""
    response = error(503, str(exc))
    response.headers["Retry-After"] = str(exc.retry_after_s)
    return response


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
