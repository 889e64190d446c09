"""How fast the page's requests are answered: the real server on a free local port, timed over HTTP.

`dcgan serve RUN --benchmark` prints the table; each request is made `repeats` times one after another and the
median and fastest wall-clock times (request sent to answer read, JSON and PNGs included) are reported, with the
CPU seconds the process spent per request (on a machine shared with other jobs, wall time exceeds the ideal).
"""

from __future__ import annotations

import io
import json
import socket
import statistics
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

import torch

from dcgan.sample import generate, latents
from dcgan.web.explorer import Explorer, image_of


@dataclass
class Timing:
    request: str
    median_ms: float
    fastest_ms: float
    cpu_s: float  # CPU seconds this process spent per request (all threads): the work, whatever the machine's load
    response_kb: float


#: (label, path, body, content type, warm-up calls, timed calls): one request the page makes.
Call = tuple[str, str, bytes, str, int, int]


def requests_to_time(explorer: Explorer, repeats: int = 5) -> list[Call]:
    """What the page asks most: a sheet of 64, arithmetic on 3+3+3, a 17-step walk, a 17-step direction, 16
    samples with half of a layer's filters off (each once to warm up, then `repeats` times), and one projection
    of an upload (100 steps, 2 restarts; timed once: it is seconds, not milliseconds). A class-conditional
    model's requests draw in its first class, and the same 8 z drawn in every class is timed too."""
    z = latents(64, explorer.generator.nz, explorer.prior, 0).tolist()
    conditional = bool(explorer.generator.num_classes)
    klass: dict[str, Any] = {"class": 0} if conditional else {}
    layer = len(explorer.layers) - 1
    half = list(range(0, explorer.layers[layer], 2))
    json_calls: list[tuple[str, str, dict[str, Any]]] = [
        ("sheet of 64", "/api/sheet", {"seed": 1, "n": 64}),
        ("arithmetic (3+3+3, 9 results)", "/api/arithmetic", {"a": z[0:3], "b": z[3:6], "c": z[6:9]}),
        ("walk, 17 steps (slerp)", "/api/walk", {"z0": z[0], "z1": z[1], "steps": 17, "method": "slerp"}),
        ("direction, 17 steps", "/api/direction", {"a": z[0:3], "b": z[3:6], "start": z[9], "steps": 17}),
        (f"16 samples, half of layer {layer}'s filters off", "/api/filters", {"z": z[:16], "layer": layer, "filters": half}),
    ]  # fmt: skip
    json_calls = [(label, path, body | klass) for label, path, body in json_calls]
    if conditional:
        classes = len(explorer.generator.classes)
        json_calls.append((f"8 z in each of {classes} classes", "/api/classes", {"z": z[:8]}))
    calls: list[Call] = [(label, path, json.dumps(body).encode(), "application/json", 1, repeats) for label, path, body in json_calls]  # fmt: skip
    image = io.BytesIO()
    image_of(generate(explorer.drawing(0 if conditional else None), torch.tensor(z[10:11]))[0]).save(
        image, format="PNG"
    )
    boundary = "dcgan-timing-boundary"
    form = [("steps", 100), ("restarts", 2), *(("class", 0) for _ in range(conditional))]
    fields = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in form]  # fmt: skip
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="sample.png"\r\nContent-Type: image/png\r\n\r\n'
    body = "".join(fields).encode() + head.encode() + image.getvalue() + f"\r\n--{boundary}--\r\n".encode()
    calls.append(("projection of an upload (100 steps, 2 restarts)", "/api/project", body, f"multipart/form-data; boundary={boundary}", 0, 1))  # fmt: skip
    return calls


def measure(explorer: Explorer, repeats: int = 5) -> list[Timing]:
    """Serve `explorer` with uvicorn on 127.0.0.1 in a thread and time each request of `requests_to_time`."""
    import uvicorn

    from dcgan.web.server import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(explorer), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.05)
    try:
        results = []
        for label, path, data, kind, warm_up, timed in requests_to_time(explorer, repeats):
            times, size, cpu = [], 0, 0.0
            for i in range(warm_up + timed):  # warm-up calls are not counted
                request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data, {"Content-Type": kind})
                start, start_cpu = time.perf_counter(), time.process_time()
                with urllib.request.urlopen(request) as response:
                    size = len(response.read())
                if i >= warm_up:
                    times.append(time.perf_counter() - start)
                    cpu += time.process_time() - start_cpu
            median, fastest = statistics.median(times) * 1e3, min(times) * 1e3
            results.append(Timing(label, median, fastest, cpu / timed, size / 1024))
        return results
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def table(timings: list[Timing]) -> str:
    rows = [
        f"| {'request':<48} | median ms | fastest ms | CPU s | answer KB |",
        f"|{'-' * 50}|----------:|-----------:|------:|----------:|",
    ]
    rows += [
        f"| {t.request:<48} | {t.median_ms:9.0f} | {t.fastest_ms:10.0f} | {t.cpu_s:5.2f} | {t.response_kb:9.0f} |"
        for t in timings
    ]
    return "\n".join(rows)
