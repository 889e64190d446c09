"""The web server under load: throughput, latency percentiles and memory at 1, 8, 64 and 256 concurrent clients.

Starts `dcgan serve RUN` in a process of its own on 127.0.0.1 (a free port; nothing leaves the machine) and
drives it from this process with asyncio + httpx: N clients, each sending its next request as soon as its last
was answered, for --duration seconds per level or until --max-requests were sent, whichever comes first; then
the requests in flight are awaited. The requests are a mix of what the page asks (`/api/info`, a sheet of 64, a
17-step walk, arithmetic on 3+3+3, 16 samples with half a layer's filters off, a projection of an upload).
Meanwhile a separate process asks `/api/info` 20 times a second (the "info probe" row): its latency is the
server's, free of this process's own scheduling of hundreds of clients. The server's resident memory (RSS) is
read every half second.

The table has one row per level and request type: requests sent, answers per second, p50/p95/p99 latency of the
200 answers, counts of 200 answers, well-formed 503s (a JSON error and a Retry-After header) and anything else
(other statuses, a 503 without Retry-After, timeouts, dropped connections), and the p99 time to a 503.

Without RUN it builds a tiny untrained run (32x32, one training step) in a temporary folder, so that it works
anywhere; its figures say how the server copes, not how fast a real model is.

    python benchmarks/web_load.py runs/faces64 --duration 60      # the full table (about 5 minutes)
    python benchmarks/web_load.py --quick                         # a smoke run: tiny model, 1 and 8 clients, 2 s
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_MIX = "info:4,sheet:1,walk:1,arithmetic:1,filters:1,project:1"
KINDS = ("info", "sheet", "walk", "arithmetic", "filters", "project", "classes")


# ----------------------------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    """Resident memory of a process (Linux /proc; elsewhere `ps`)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    out = subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return int(out) / 1024 if out else float("nan")


def tiny_run(folder: Path, classes: int = 0) -> Path:
    """An untrained 32x32 RGB run (one training step on random pixels), written to folder/run; with `classes`
    > 1 a class-conditional one, the images labelled in turn."""
    import torch

    from dcgan.config import build_config
    from dcgan.data import ImageData
    from dcgan.train import train

    config = build_config(
        None, data="random", image_size=32, channels=3, nz=100, ngf=32, ndf=32, batch_size=16, steps=1,
        log_every=1, sample_every=1, checkpoint_every=1, precision="fp32", seed=0, conditional=classes > 1,
    )  # fmt: skip
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(64) % max(classes, 1)
    names = tuple(f"class-{i}" for i in range(classes)) if classes > 1 else None
    data = ImageData(images, labels, "random", "train", "synthetic", classes=names)
    train(config, folder / "run", data=data, progress=False)
    return folder / "run"


class Server:
    """`dcgan serve` in a child process, its output kept in a file for when it fails."""

    def __init__(self, run: Path, flags: list[str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        command = [sys.executable, "-m", "dcgan", "serve", str(run), "--port", str(self.port), *flags]
        with open(log, "wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 300.0) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise SystemExit(f"dcgan serve exited with code {self.process.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/info", timeout=5) as response:
                    return json.loads(response.read())  # type: ignore[no-any-return]
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise SystemExit(f"dcgan serve did not answer within {timeout:.0f} s:\n{self.log.read_text()}")

    def load(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/api/info", timeout=30) as response:
            return json.loads(response.read())["load"]  # type: ignore[no-any-return]

    def wait_idle(self, timeout: float = 300.0) -> None:
        """Until no request runs or waits (work abandoned by clients at the end of a level has ended)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if all(lane["running"] + lane["waiting"] == 0 for lane in self.load().values()):
                return
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class MemoryWatch(threading.Thread):
    """Reads the server's RSS every half second; `peak` and `last` are what it saw."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.last = pid, 0.0, 0.0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.5):
            self.last = rss_mib(self.pid)
            self.peak = max(self.peak, self.last)


# ----------------------------------------------------------------------------------------------- requests


def requests_for(info: dict[str, Any], sheet_n: int, project_steps: int) -> dict[str, tuple[str, dict[str, Any]]]:
    """kind -> (path, httpx keyword arguments) for the model `info` describes."""
    from PIL import Image

    rng = random.Random(0)
    nz = info["nz"]
    z = [[rng.uniform(-1, 1) for _ in range(nz)] for _ in range(16)]
    layer = len(info["layers"]) - 1
    size, channels = info["image_size"], info["channels"]
    image = Image.frombytes("RGB" if channels == 3 else "L", (size, size), rng.randbytes(size * size * channels))
    upload = io.BytesIO()
    image.save(upload, format="PNG")
    # A class-conditional model's drawing requests name a class (its last, as a user picks one on the page).
    classes = info.get("classes") or []
    klass = {"class": classes[-1]} if classes else {}
    calls = {
        "info": ("/api/info", {}),
        "sheet": ("/api/sheet", {"json": {"seed": 1, "n": sheet_n, **klass}}),
        "walk": ("/api/walk", {"json": {"z0": z[0], "z1": z[1], "steps": 17, "method": "slerp", **klass}}),
        "arithmetic": ("/api/arithmetic", {"json": {"a": z[0:3], "b": z[3:6], "c": z[6:9], **klass}}),
        "filters": ("/api/filters", {"json": {"z": z, "layer": layer, "filters": list(range(0, info["layers"][layer], 2)), **klass}}),
        "project": ("/api/project", {"files": {"file": ("x.png", upload.getvalue(), "image/png")},
                                     "data": {"steps": str(project_steps), "restarts": "2", **klass}}),
    }  # fmt: skip
    if classes:  # the same z drawn in every class: the page's class strip
        calls["classes"] = ("/api/classes", {"json": {"z": z[:4]}})
    return calls


def parse_mix(text: str) -> list[str]:
    """ "info:4,sheet:1" -> the cycle of kinds each client goes through (from its own offset), spread evenly
    (smooth weighted round robin: info, sheet, info, info, info rather than four infos in a row)."""
    weights: dict[str, int] = {}
    for part in text.split(","):
        kind, _, weight = part.partition(":")
        if kind not in KINDS or not weight.isdigit() or int(weight) < 1:
            raise SystemExit(f"--mix: expected kind:weight with kinds from {', '.join(KINDS)}, got {part!r}")
        weights[kind] = int(weight)
    total, current, cycle = sum(weights.values()), dict.fromkeys(weights, 0), []
    for _ in range(total):
        for kind in current:
            current[kind] += weights[kind]
        chosen = max(current, key=lambda k: current[k])
        current[chosen] -= total
        cycle.append(chosen)
    return cycle


@dataclass
class Outcomes:
    """What one request type got at one level."""

    sent: int = 0
    ok_ms: list[float] = field(default_factory=list)
    busy_ms: list[float] = field(default_factory=list)
    busy_server_ms: list[float] = field(default_factory=list)  # the 503s' time inside the server (Server-Timing)
    other: dict[str, int] = field(default_factory=dict)

    def add_other(self, what: str) -> None:
        self.other[what] = self.other.get(what, 0) + 1


def well_formed_503(response: Any) -> bool:
    try:
        retry = int(response.headers.get("retry-after", ""))
        return retry >= 1 and isinstance(response.json().get("error"), str)
    except ValueError:
        return False


def server_timing_ms(response: Any) -> float | None:
    """The `app;dur=MS` the server put in its Server-Timing header: its own time for the request."""
    for part in response.headers.get("server-timing", "").split(";"):
        if part.strip().startswith("dur="):
            return float(part.strip()[4:])
    return None


async def drive(url: str, clients: int, seconds: float, max_requests: int, mix: list[str],
                calls: dict[str, tuple[str, dict[str, Any]]], timeout: float) -> tuple[dict[str, Outcomes], float]:  # fmt: skip
    import httpx

    outcomes = {kind: Outcomes() for kind in mix}
    budget = [max_requests]
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:
        start = time.perf_counter()
        end = start + seconds

        async def one_client(index: int) -> None:
            turn = index
            while time.perf_counter() < end and budget[0] > 0:
                budget[0] -= 1
                kind = mix[turn % len(mix)]
                turn += 1
                path, kwargs = calls[kind]
                out = outcomes[kind]
                out.sent += 1
                sent = time.perf_counter()
                try:
                    response = await (client.get(path) if kind == "info" else client.post(path, **kwargs))
                except httpx.HTTPError as exc:
                    out.add_other(type(exc).__name__)
                    continue
                ms = (time.perf_counter() - sent) * 1e3
                if response.status_code == 200:
                    out.ok_ms.append(ms)
                elif response.status_code == 503 and well_formed_503(response):
                    out.busy_ms.append(ms)
                    server_ms = server_timing_ms(response)
                    if server_ms is not None:
                        out.busy_server_ms.append(server_ms)
                else:
                    out.add_other(str(response.status_code))

        await asyncio.gather(*(one_client(i) for i in range(clients)))
        return outcomes, time.perf_counter() - start


def probe(url: str, stop: Any, results: Any) -> None:
    """In its own process: GET /api/info every 50 ms until `stop` is set; put the latencies (ms) on `results`."""
    times: list[float] = []
    failures = 0
    while not stop.is_set():
        sent = time.perf_counter()
        try:
            with urllib.request.urlopen(f"{url}/api/info", timeout=30) as response:
                response.read()
            times.append((time.perf_counter() - sent) * 1e3)
        except OSError:
            failures += 1
        time.sleep(max(0.0, 0.05 - (time.perf_counter() - sent)))
    results.put((times, failures))


# ----------------------------------------------------------------------------------------------- the table


def percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def ms(value: float, width: int) -> str:
    return f"{'-':>{width}}" if value != value else f"{value:{width}.0f}"  # NaN (no answers): a dash


def row(clients: int, kind: str, out: Outcomes, seconds: float, rss: str = "") -> str:
    ok = out.ok_ms
    other = sum(out.other.values())
    cells = [
        f"{clients:>7}", f"{kind:<12}", f"{out.sent:>6}", f"{len(ok) / seconds:6.1f}",
        *(ms(percentile(ok, q), 7) for q in (50, 95, 99)),
        f"{len(ok):>6}", f"{len(out.busy_ms):>6}", f"{other:>5}", ms(percentile(out.busy_ms, 99), 10),
        ms(percentile(out.busy_server_ms, 99), 13), f"{rss:>7}",
    ]  # fmt: skip
    note = f" ({', '.join(f'{k}: {v}' for k, v in sorted(out.other.items()))})" if other else ""
    return "| " + " | ".join(cells) + " |" + note


HEADER = (
    "| clients | request      |   sent |   ok/s |  p50 ms |  p95 ms |  p99 ms |    200 |    503 | other | 503 p99 ms | 503 server ms | RSS MiB |\n"
    "|--------:|--------------|-------:|-------:|--------:|--------:|--------:|-------:|-------:|------:|-----------:|--------------:|--------:|"
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", nargs="?", type=Path, help="run folder or checkpoint (default: build a tiny untrained run)")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny model, 1 and 8 clients, 2 s each")
    p.add_argument("--classes", type=int, default=0,
                   help="without RUN: make the tiny run class-conditional with this many classes (its requests "
                        "then name a class, and the mix may include `classes`)")  # fmt: skip
    p.add_argument("--clients", help="concurrency levels, comma-separated (default 1,8,64,256)")
    p.add_argument("--duration", type=float, help="seconds per level (default 30)")
    p.add_argument("--max-requests", type=int, help="requests per level at most (default 20000)")
    p.add_argument("--mix", help=f"request kinds and weights (default {DEFAULT_MIX}, plus classes:1 for a "
                                  "class-conditional model)")  # fmt: skip
    p.add_argument("--sheet-n", type=int, help="images per sheet request (default 64, the page's)")
    p.add_argument("--project-steps", type=int, help="steps of each projection, with 2 restarts (default 100)")
    p.add_argument("--client-timeout", type=float, default=300.0, help="seconds a client waits for an answer")
    for flag in ("--threads", "--workers", "--queue", "--timeout", "--project-queue", "--project-timeout"):
        p.add_argument(flag, help=f"passed to dcgan serve {flag}")
    args = p.parse_args()
    quick = args.quick
    levels = [int(c) for c in (args.clients or ("1,8" if quick else "1,8,64,256")).split(",")]
    seconds = args.duration or (2.0 if quick else 30.0)
    max_requests = args.max_requests or (200 if quick else 20_000)
    sheet_n = args.sheet_n or (16 if quick else 64)
    project_steps = args.project_steps or (5 if quick else 100)
    flags = [x for flag in ("threads", "workers", "queue", "timeout", "project_queue", "project_timeout")
             if getattr(args, flag) is not None for x in (f"--{flag.replace('_', '-')}", getattr(args, flag))]  # fmt: skip

    with tempfile.TemporaryDirectory() as folder:
        run = args.run or tiny_run(Path(folder), args.classes)
        server = Server(run, flags, Path(folder) / "server.log")
        try:
            info = server.wait_ready()
            calls = requests_for(info, sheet_n, project_steps)
            args.mix = args.mix or DEFAULT_MIX + (",classes:1" if "classes" in calls else "")
            mix = parse_mix(args.mix)
            if "classes" in mix and "classes" not in calls:
                raise SystemExit("--mix: `classes` draws one z in every class; this model is unconditional.")
            import httpx

            with httpx.Client(base_url=server.url, timeout=args.client_timeout) as warm:  # one of each, not timed
                for kind, (path, kwargs) in calls.items():
                    response = warm.get(path) if kind == "info" else warm.post(path, **kwargs)
                    if response.status_code != 200:
                        raise SystemExit(f"warm-up {kind}: {response.status_code} {response.text[:300]}")
            load = server.load()
            start_rss = rss_mib(server.process.pid)
            watch = MemoryWatch(server.process.pid)
            watch.start()
            gen, proj = load["generate"], load["project"]
            print(f"{info['name']} (step {info['step']}, {info['image_size']}x{info['image_size']}, nz {info['nz']}); "
                  f"server: {gen['workers']} workers + {gen['queue']} waiting, projections 1 + {proj['queue']} waiting; "
                  f"{seconds:g} s or {max_requests} requests per level; mix {args.mix}; sheets of {sheet_n}, "
                  f"projections of {project_steps} steps x 2 restarts; {os.cpu_count()} CPUs")  # fmt: skip
            print(f"server RSS after warm-up: {start_rss:.0f} MiB\n")
            print(HEADER)
            failures, info_p99 = 0, {}
            context = multiprocessing.get_context("spawn")
            level_rss: dict[int, tuple[float, float]] = {}
            for clients in levels:
                before = rss_mib(server.process.pid)
                stop, results = context.Event(), context.Queue()
                prober = context.Process(target=probe, args=(server.url, stop, results), daemon=True)
                prober.start()
                outcomes, took = asyncio.run(
                    drive(server.url, clients, seconds, max_requests, mix, calls, args.client_timeout)
                )
                stop.set()
                probe_ms, probe_failures = results.get(timeout=60)
                prober.join(timeout=10)
                for kind in KINDS:
                    if kind in outcomes:
                        print(row(clients, kind, outcomes[kind], took))
                        failures += sum(outcomes[kind].other.values())
                probed = Outcomes(len(probe_ms) + probe_failures, probe_ms, other={"error": probe_failures} if probe_failures else {})  # fmt: skip
                print(row(clients, "info probe", probed, took, f"{rss_mib(server.process.pid):.0f}"))
                failures += probe_failures
                info_p99[clients] = percentile(probe_ms, 99)
                server.wait_idle()
                level_rss[clients] = (before, rss_mib(server.process.pid))
            end_rss = rss_mib(server.process.pid)
            watch.stopped.set()
        finally:
            server.stop()
    growth = (end_rss - start_rss) / start_rss * 100
    print(f"\nserver RSS: {start_rss:.0f} MiB after warm-up, {max(watch.peak, end_rss):.0f} MiB peak, "
          f"{end_rss:.0f} MiB at the end ({growth:+.1f}%)")  # fmt: skip
    for clients, (before, after) in level_rss.items():
        print(f"server RSS during the {clients}-client level: {before:.0f} -> {after:.0f} MiB "
              f"({(after - before) / before * 100:+.1f}%)")  # fmt: skip
    print(f"answers other than 200 or a well-formed 503: {failures}")
    print("info probe p99: " + ", ".join(f"{ms:.0f} ms at {c} clients" for c, ms in info_p99.items()))


if __name__ == "__main__":
    main()
