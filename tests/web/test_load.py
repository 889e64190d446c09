"""Under load the server stays bounded: a full queue is answered 503 with Retry-After at once, /api/info is
answered while every worker is busy, a projection past its time limit stops and frees its worker, and the limits
are checked flags of `dcgan serve`.

The heavy requests are held deterministically: the test takes G's lock itself, so the workers wait on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient

from dcgan.errors import ConfigError
from dcgan.web.explorer import Explorer
from dcgan.web.limits import ServerLimits
from dcgan.web.server import create_app

from .test_errors import refused
from .test_server import png_bytes

#: Generous for a loaded CI machine; an answer that waited behind G or a worker would take the whole hold.
QUICK_S = 1.0


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"timed out waiting until {what}"
        time.sleep(0.01)


def lane_is(client: TestClient, lane: str, running: int, waiting: int) -> Callable[[], bool]:
    state = client.app.state.lanes[lane].state  # type: ignore[attr-defined]
    return lambda: (state()["running"], state()["waiting"]) == (running, waiting)


@contextmanager
def serving(explorer: Explorer, **limits: Any) -> Iterator[TestClient]:
    """A client of one server with these limits. Entered as a context, TestClient sends every request to one event
    loop, as uvicorn does (without it each request gets a loop of its own, and a blocked loop would go unseen)."""
    with TestClient(create_app(explorer, limits=ServerLimits(**limits))) as client:
        yield client


@contextmanager
def g_held(explorer: Explorer) -> Iterator[None]:
    """G's lock held by the test: every request that runs G waits for it on its worker."""
    explorer.lock.acquire()
    try:
        yield
    finally:
        explorer.lock.release()


def quick(pool: ThreadPoolExecutor, call: Callable[[], Any]) -> Any:
    """call()'s answer, which must come within QUICK_S (it runs on `pool`, so that a server that blocks fails the
    test instead of hanging it)."""
    return pool.submit(call).result(timeout=QUICK_S)


def test_a_full_queue_is_answered_503_with_retry_after_at_once(explorer: Explorer) -> None:
    with serving(explorer, workers=1, queue=1) as client:
        sheet = lambda seed: client.post("/api/sheet", json={"seed": seed, "n": 2})
        with ThreadPoolExecutor(4) as pool:
            with g_held(explorer):
                first = pool.submit(sheet, 1)
                wait_until(lane_is(client, "generate", 1, 0), "the first request runs")
                second = pool.submit(sheet, 2)
                wait_until(lane_is(client, "generate", 1, 1), "the second request waits")
                for path, body in (("/api/sheet", {"seed": 3}), ("/api/walk", {"z0": [0.0] * 8, "z1": [0.0] * 8})):
                    full = quick(pool, lambda: client.post(path, json=body))
                    refused(full, 503, "busy", "1 request running, 1 waiting", "try again in")
                    assert int(full.headers["retry-after"]) >= 1
                    # Server-Timing: the server's own time, which benchmarks/web_load.py tells from its clients'
                    assert float(full.headers["server-timing"].split("dur=")[1]) < 1000
                    assert full.json()["error"].count(". ") == 0 and full.json()["error"].endswith(".")
                info = quick(pool, lambda: client.get("/api/info"))
                assert info.json()["load"]["generate"] == {"workers": 1, "queue": 1, "running": 1, "waiting": 1}
            assert first.result(timeout=30).status_code == 200 and second.result(timeout=30).status_code == 200
        wait_until(lane_is(client, "generate", 0, 0), "the lane is empty again")
        assert sheet(4).status_code == 200


def test_a_full_lane_refuses_an_upload_before_reading_it(explorer: Explorer) -> None:
    with serving(explorer, project_queue=0) as client:
        upload = lambda kind: client.post(
            "/api/project", files={"file": ("x.png", png_bytes(), kind)}, data={"steps": "2", "restarts": "1"}
        )
        with ThreadPoolExecutor(2) as pool:
            with g_held(explorer):
                first = pool.submit(upload, "image/png")
                wait_until(lane_is(client, "project", 1, 0), "the first projection runs")
                # A text upload would be refused 415 once parsed: a 503 shows the lane was checked before that.
                full = quick(pool, lambda: upload("text/plain"))
                refused(full, 503, "busy", "1 projection running, 0 waiting", "try again in")
                assert int(full.headers["retry-after"]) >= 1
            assert first.result(timeout=30).status_code == 200
        wait_until(lane_is(client, "project", 0, 0), "the lane is empty again")
        assert upload("text/plain").status_code == 415


def test_info_and_the_page_are_answered_while_every_worker_waits_for_g(explorer: Explorer) -> None:
    with serving(explorer, workers=2, queue=3) as client:
        z = [[0.1] * explorer.generator.nz]
        heavy = [("/api/sheet", {"seed": 1, "n": 4}), ("/api/arithmetic", {"a": z, "b": z, "c": z}),
                 ("/api/filters", {"z": z, "layer": 0, "filters": [0]}), ("/api/walk", {"z0": z[0], "z1": z[0]}),
                 ("/api/direction", {"a": z, "b": z, "start": z[0]})]  # fmt: skip
        with ThreadPoolExecutor(8) as pool:
            with g_held(explorer):
                held = [pool.submit(client.post, path, json=body) for path, body in heavy]
                wait_until(lane_is(client, "generate", 2, 3), "two requests run and three wait")
                for _ in range(5):
                    info = quick(pool, lambda: client.get("/api/info"))
                    assert info.status_code == 200 and info.json()["nz"] == explorer.generator.nz
                page = quick(pool, lambda: client.get("/"))
                assert page.status_code == 200
                assert all(not f.done() for f in held), "the heavy requests are still held"
            assert [f.result(timeout=30).status_code for f in held] == [200] * 5


def test_info_is_answered_while_a_worker_computes(explorer: Explorer, monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU work on a worker (here pure Python, which holds the GIL in turns) does not stall the event loop."""
    with serving(explorer, workers=1, queue=0) as client:

        def busy_walk(*args: Any) -> dict[str, Any]:
            end = time.perf_counter() + 2.0
            while time.perf_counter() < end:
                sum(range(1000))
            return {"done": True}

        monkeypatch.setattr(explorer, "walk", busy_walk)
        with ThreadPoolExecutor(2) as pool:
            walking = pool.submit(client.post, "/api/walk", json={"z0": [0.0] * 8, "z1": [0.0] * 8})
            wait_until(lane_is(client, "generate", 1, 0), "the walk runs")
            for _ in range(3):
                info = quick(pool, lambda: client.get("/api/info"))
                assert info.status_code == 200
            assert not walking.done()
            assert walking.result(timeout=30).json() == {"done": True}


def test_a_projection_past_its_time_limit_stops_and_frees_its_worker(explorer: Explorer) -> None:
    with serving(explorer, project_timeout_s=0.5) as client:
        steps: list[float] = []

        def slow_step(module: torch.nn.Module, args: Any) -> None:  # 1000 steps x 2 restarts would take 20 s
            steps.append(time.monotonic())
            time.sleep(0.02)

        upload = lambda n: client.post(
            "/api/project", files={"file": ("x.png", png_bytes(), "image/png")}, data={"steps": str(n)}
        )
        hook = explorer._projector.register_forward_pre_hook(slow_step)
        try:
            start = time.perf_counter()
            stopped = upload(1000)
            seconds = time.perf_counter() - start
        finally:
            hook.remove()
        refused(stopped, 504, "projection", "time limit of 0.5 s", "stopped", "fewer steps")
        assert seconds < 3, f"answered after {seconds:.1f} s: the optimisation did not stop at its limit"
        count = len(steps)
        time.sleep(0.3)
        assert len(steps) == count and 0 < count < 1000, "the optimisation loop ended with the answer"
        wait_until(lane_is(client, "project", 0, 0), "the projection worker is free")
        assert upload(3).status_code == 200, "the next projection runs on the freed worker"


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--workers", "0"], "positive integer"),
        (["--workers", "many"], "positive integer"),
        (["--workers", "65"], "number of workers must be a whole number from 1 to 64"),
        (["--queue", "-1"], "0 or more"),
        (["--queue", "5000"], "queue must be a whole number from 0 to 4096"),
        (["--timeout", "0"], "positive number"),
        (["--timeout", "soon"], "number"),
        (["--timeout", "7200"], "time limit must be a number of seconds above 0 and at most 3600"),
        (["--project-queue", "-2"], "0 or more"),
        (["--project-timeout", "nan"], "positive number"),
        (["--project-timeout", "inf"], "projection time limit"),
    ],
)
def test_serve_limits_are_checked_flags(
    tiny_run_rgb: Path, flags: list[str], words: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import uvicorn

    from dcgan.cli import main

    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: pytest.fail("the server started despite a bad limit"))
    try:
        code = main(["serve", str(tiny_run_rgb), *flags])
    except SystemExit as exit:
        code = exit.code
    assert code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert words in last and "Traceback" not in last, last


def test_serve_passes_its_limits_to_the_server(
    tiny_run_rgb: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import uvicorn

    from dcgan.cli import main

    apps: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: apps.append(app))
    threads = torch.get_num_threads()
    flags = ["--workers", "3", "--queue", "0", "--timeout", "2.5", "--project-queue", "5", "--project-timeout", "9"]
    try:
        assert main(["serve", str(tiny_run_rgb), "--threads", "1", *flags]) == 0
    finally:
        torch.set_num_threads(threads)
    assert apps[0].state.limits == ServerLimits(workers=3, queue=0, timeout_s=2.5, project_queue=5, project_timeout_s=9)
    assert "Up to 3 requests at once and 0 waiting" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="number of workers"):
        ServerLimits(workers=0)
    with pytest.raises(ConfigError, match="projection queue"):
        ServerLimits(project_queue=True)  # type: ignore[arg-type]
