"""Every bad request gets a 4xx and one clear sentence; 20 requests at once do not corrupt each other."""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient

from dcgan.web.explorer import MAX_UPLOAD_BYTES, Explorer
from dcgan.web.server import create_app

from .test_server import decode, png_bytes, sheet_z


def refused(response: Any, status: int, *words: str) -> None:
    """The response has this status and a JSON {"error": sentence} that mentions each word."""
    assert response.status_code == status, (response.status_code, response.text)
    message = response.json()["error"]
    assert isinstance(message, str) and message and "Traceback" not in message
    for word in words:
        assert word.lower() in message.lower(), message


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"seed": -1}, ["seed", "greater than or equal to 0"]),
        ({"seed": 2**31}, ["seed", "less than or equal"]),
        ({"seed": "5"}, ["seed", "integer"]),
        ({"seed": 1.5}, ["seed"]),
        ({"n": 0}, ["n"]),
        ({"n": 257}, ["n", "256"]),
        ({"start": -3}, ["start"]),
        ({"start": 4000, "n": 200}, ["start + n", "4096"]),
        ({"sead": 1}, ["sead", "not permitted"]),
    ],
)
def test_bad_sheet_requests(client: TestClient, body: dict[str, Any], words: list[str]) -> None:
    refused(client.post("/api/sheet", json=body), 422, *words)


def test_body_that_is_not_json(client: TestClient) -> None:
    response = client.post("/api/sheet", content=b"seed=1", headers={"content-type": "application/json"})
    refused(response, 422, "JSON")
    refused(client.post("/api/sheet", json=[1, 2]), 422)


def test_bad_latent_vectors(client: TestClient, explorer: Explorer) -> None:
    nz = explorer.generator.nz
    good = sheet_z(explorer, 3)
    post = lambda body: client.post("/api/arithmetic", json=body)
    refused(post({"a": good, "b": good, "c": [[0.0] * (nz + 1)]}), 400, "Group C", f"{nz}")
    refused(post({"a": good, "b": [], "c": good}), 422, "b", "at least 1")
    refused(post({"a": good, "b": good}), 422, "c", "required")
    refused(post({"a": good * 11, "b": good, "c": good}), 422, "a", "at most 32")
    refused(post({"a": good, "b": good, "c": [[1e9] * nz]}), 422, "less than or equal to 100")
    refused(post({"a": good, "b": good, "c": [["x"] * nz]}), 422, "number")
    refused(post({"a": good, "b": good, "c": good, "noise": -1}), 422, "noise")
    for bad in (float("nan"), float("inf")):  # Python's JSON reader accepts NaN and Infinity; the API must not
        text = json.dumps({"a": good, "b": good, "c": [[bad] + [0.0] * (nz - 1)]})
        response = client.post("/api/arithmetic", content=text, headers={"content-type": "application/json"})
        refused(response, 422, "finite")


def test_bad_walks_and_directions(client: TestClient, explorer: Explorer) -> None:
    z = sheet_z(explorer, 4)
    walk = lambda **kw: client.post("/api/walk", json={"z0": z[0], "z1": z[1]} | kw)
    refused(walk(steps=1), 422, "steps", "greater than or equal to 2")
    refused(walk(steps=65), 422, "steps", "64")
    refused(walk(method="cubic"), 422, "method", "linear", "slerp")
    refused(walk(z1=z[1][:-1]), 400, "length")
    direction = lambda **kw: client.post("/api/direction", json={"a": z[:2], "b": z[2:], "start": z[0]} | kw)
    refused(direction(span=0), 422, "span")
    refused(direction(span=6), 422, "span")
    refused(direction(start=[]), 422, "start")


def test_bad_layers_and_filters(client: TestClient, explorer: Explorer) -> None:
    z = sheet_z(explorer, 2)
    layers = explorer.info()["layers"]
    drop = lambda **kw: client.post("/api/filters", json={"z": z, "layer": 0, "filters": []} | kw)
    refused(drop(layer=len(layers)), 400, "layer", f"0 to {len(layers) - 1}")
    refused(drop(layer=-1), 422, "layer")
    refused(drop(filters=[layers[0]]), 400, f"filter {layers[0]}", f"0 to {layers[0] - 1}")
    refused(drop(filters=[-2]), 422, "filters")
    refused(drop(z=z * 33), 422, "z", "64")


def test_bad_uploads(client: TestClient) -> None:
    def upload(data: bytes, kind: str = "image/png", **fields: str) -> Any:
        return client.post("/api/project", files={"file": ("x", data, kind)}, data={"steps": "2"} | fields)

    refused(upload(b"this is not an image"), 400, "not an image")
    refused(upload(b""), 400, "empty")
    refused(upload(png_bytes()[:60]), 400, "not an image")  # a truncated PNG
    refused(upload(png_bytes(), kind="text/plain"), 415, "text/plain")
    refused(upload(png_bytes(), steps="0"), 422, "steps")
    refused(upload(png_bytes(), steps="many"), 422, "steps")
    refused(upload(png_bytes(), restarts="9"), 422, "restarts")
    refused(client.post("/api/project", data={"steps": "2"}), 422, "file", "required")
    refused(upload(b"\0" * (MAX_UPLOAD_BYTES + 1)), 413, "5 MB")
    refused(upload(b"\0" * (MAX_UPLOAD_BYTES + 2**20)), 413, "5 MB")  # refused by its Content-Length alone
    bomb = io.BytesIO()
    Image.new("1", (9000, 9000)).save(bomb, format="PNG")  # 81 megapixels in a few kilobytes
    refused(upload(bomb.getvalue()), 400, "megapixels")


def test_requests_without_a_length_and_unknown_paths(client: TestClient) -> None:
    chunks = iter([b'{"seed": 1}'])  # sent chunked, so its size is not known up front
    refused(client.post("/api/sheet", content=chunks, headers={"content-type": "application/json"}), 411)
    refused(client.get("/api/nothing"), 404)
    refused(client.get("/api/sheet"), 405)
    for sneaky in ("/static/%2e%2e/server.py", "/static/..%2fserver.py", "/static/../explorer.py"):
        response = client.get(sneaky)
        assert response.status_code == 404 and "import" not in response.text


def test_no_request_names_a_file(client: TestClient, explorer: Explorer, tmp_path: Path) -> None:
    secret = tmp_path / "z.npy"
    np.save(secret, np.zeros((1, explorer.generator.nz), dtype=np.float32))
    refused(client.post("/api/arithmetic", json={"a": str(secret), "b": str(secret), "c": str(secret)}), 422)
    refused(client.post("/api/z.npy", json={"z": sheet_z(explorer, 1), "name": "../../etc/passwd"}), 422, "name")


def test_twenty_concurrent_requests_do_not_corrupt_each_other(client: TestClient, explorer: Explorer) -> None:
    """Sheets, filter drops (which hook the shared G) and walks at once: each answer matches its own request
    answered alone."""
    z = sheet_z(explorer, 4, seed=11)
    count = explorer.info()["layers"][1]
    requests: list[tuple[str, dict[str, Any]]] = []
    for i in range(20):
        if i % 3 == 0:
            requests.append(("/api/filters", {"z": z, "layer": 1, "filters": list(range(0, count, 1 + i % 2))}))
        elif i % 3 == 1:
            requests.append(("/api/sheet", {"seed": 11, "n": 4}))
        else:
            requests.append(("/api/walk", {"z0": z[0], "z1": z[3], "steps": 4, "method": "slerp"}))
    alone = [client.post(path, json=body).json() for path, body in requests]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 20 threads on a few cores: keep each to one
    try:
        with ThreadPoolExecutor(max_workers=20) as pool:
            together = list(pool.map(lambda r: client.post(r[0], json=r[1]), requests))
    finally:
        torch.set_num_threads(threads)
    assert all(r.status_code == 200 for r in together)
    for want, got in zip(alone, together):
        assert [decode(s).tolist() for s in want["images"]] == [decode(s).tolist() for s in got.json()["images"]]


def test_a_local_server_answers_only_requests_addressed_to_this_machine(explorer: Explorer) -> None:
    app = create_app(explorer, local_only=True)
    for base in ("http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000"):
        assert TestClient(app, base_url=base).get("/api/info").status_code == 200
    rebound = TestClient(app, base_url="http://attacker.example:8000")  # a DNS name pointed at 127.0.0.1
    refused(rebound.get("/api/info"), 421, "127.0.0.1")
    refused(rebound.post("/api/sheet", json={"seed": 1}), 421)


def test_projection_work_is_bounded(client: TestClient) -> None:
    files = {"file": ("x.png", png_bytes(), "image/png")}
    refused(client.post("/api/project", files=files, data={"steps": "1000", "restarts": "8"}), 422, "steps x restarts")
