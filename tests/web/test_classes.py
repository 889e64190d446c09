"""The API of a class-conditional generator: every drawing request names a class, which is checked, and the same z
can be drawn in every class."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient

from dcgan.conditional import ClassGenerator
from dcgan.inspection import drop_filters
from dcgan.models import Generator
from dcgan.sample import generate, latents
from dcgan.web.explorer import Explorer
from dcgan.web.server import create_app

from .test_errors import refused
from .test_server import close, decode, pixels

CLASSES = ("cat", "dog", "emu")


def conditional_generator() -> Generator:
    """A cbn G of three named classes, its weights moved off their init so that each class looks different."""
    torch.manual_seed(0)
    g = Generator(16, 3, nz=8, ngf=8, num_classes=3, conditioning="cbn")
    with torch.no_grad():
        for p in g.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    g.classes = CLASSES
    return g.eval()


@pytest.fixture(scope="module")
def conditional() -> Explorer:
    return Explorer(conditional_generator(), step=5, name="pets/step-00000005.pt")


@pytest.fixture(scope="module")
def cclient(conditional: Explorer) -> TestClient:
    return TestClient(create_app(conditional))


def in_class(explorer: Explorer, label: int, z: Any) -> np.ndarray:
    """What the page should show: G(z) drawn in class `label` under the server's plan, as uint8 pixels."""
    return pixels(generate(ClassGenerator(explorer.generator, label), torch.as_tensor(z), plan=explorer.plan))


def test_info_lists_the_classes(cclient: TestClient, client: TestClient) -> None:
    assert cclient.get("/api/info").json()["classes"] == list(CLASSES)
    assert client.get("/api/info").json()["classes"] == []  # an unconditional model has none


def test_a_sheet_is_drawn_in_the_class_named_by_name_or_id(cclient: TestClient, conditional: Explorer) -> None:
    z = latents(6, 8, "uniform", 7)
    by_name = cclient.post("/api/sheet", json={"seed": 7, "n": 6, "class": "emu"}).json()
    by_id = cclient.post("/api/sheet", json={"seed": 7, "n": 6, "class": 2}).json()
    assert np.allclose(by_name["z"], z.numpy()) and by_name["images"] == by_id["images"]
    assert (by_name["class"], by_name["class_name"]) == (2, "emu")
    assert all(close(decode(src), want) for src, want in zip(by_name["images"], in_class(conditional, 2, z)))
    cat = cclient.post("/api/sheet", json={"seed": 7, "n": 6, "class": "Cat"}).json()  # names ignore case
    assert np.allclose(cat["z"], by_name["z"]) and cat["images"] != by_name["images"]  # same z, another class
    assert all(close(decode(src), want) for src, want in zip(cat["images"], in_class(conditional, 0, z)))


def test_walks_arithmetic_directions_and_filters_stay_in_the_class(cclient: TestClient, conditional: Explorer) -> None:
    z = latents(9, 8, "uniform", 3).tolist()
    walk = cclient.post("/api/walk", json={"z0": z[0], "z1": z[1], "steps": 3, "class": "dog"}).json()
    ends = in_class(conditional, 1, [z[0], z[1]])
    assert close(decode(walk["images"][0]), ends[0]) and close(decode(walk["images"][-1]), ends[1])
    body = {"a": z[0:2], "b": z[2:4], "c": z[4:6], "class": 1}
    arithmetic = cclient.post("/api/arithmetic", json=body).json()
    assert close(decode(arithmetic["result"]), in_class(conditional, 1, [arithmetic["z"][0]])[0])
    direction = cclient.post("/api/direction", json={"a": z[:2], "b": z[2:4], "start": z[5], "class": 0}).json()
    assert close(decode(direction["images"][8]), in_class(conditional, 0, [z[5]])[0])  # t = 0 is the start
    dropped = cclient.post("/api/filters", json={"z": z[:2], "layer": 1, "filters": [0, 1, 2], "class": "emu"}).json()
    want = pixels(drop_filters(ClassGenerator(conditional.generator, 2), torch.tensor(z[:2]), 1, [0, 1, 2]))
    assert close(decode(dropped["images"][0]), want[0]) and close(
        decode(dropped["original"][0]), in_class(conditional, 2, z[:1])[0]
    )
    assert not np.array_equal(decode(dropped["images"][0]), decode(dropped["original"][0]))


def test_the_same_z_in_every_class(cclient: TestClient, conditional: Explorer) -> None:
    z = latents(4, 8, "uniform", 1).tolist()
    answer = cclient.post("/api/classes", json={"z": z}).json()
    assert answer["classes"] == list(CLASSES) and len(answer["images"]) == 3
    for label, row in enumerate(answer["images"]):
        assert len(row) == 4 and all(
            close(decode(src), want) for src, want in zip(row, in_class(conditional, label, z))
        )
    grid = decode(answer["grid"])
    assert grid.shape[0] == 3 * 18 + 2 and grid.shape[1] > 4 * 18  # one row per class, its name left of it


def test_an_upload_is_projected_within_the_class(cclient: TestClient, conditional: Explorer) -> None:
    own = generate(ClassGenerator(conditional.generator, 1), latents(1, 8, "uniform", 9))
    buffer = io.BytesIO()
    Image.fromarray(pixels(own)[0]).save(buffer, format="PNG")
    files = {"file": ("own.png", buffer.getvalue(), "image/png")}
    answer = cclient.post("/api/project", files=files, data={"steps": "30", "restarts": "2", "class": "dog"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert close(decode(body["image"]), in_class(conditional, 1, body["z"])[0])  # G(z) of the returned z in class dog
    refused(cclient.post("/api/project", files=files, data={"steps": "3", "class": "yak"}), 400, "Unknown class 'yak'")


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        ("/api/sheet", {"seed": 1, "n": 2}, ["class-conditional", "give a class", "0 (cat), 1 (dog), 2 (emu)"]),
        ("/api/sheet", {"n": 2, "class": "yak"}, ["Unknown class 'yak'", "0 (cat), 1 (dog), 2 (emu)"]),
        ("/api/sheet", {"n": 2, "class": 3}, ["Class id 3 is out of range", "3 classes"]),
        ("/api/sheet", {"n": 2, "class": -1}, ["Class id -1 is out of range"]),
        ("/api/walk", {"z0": [0.0] * 8, "z1": [0.0] * 8, "class": "11"}, ["Class id 11 is out of range"]),
        ("/api/filters", {"z": [[0.0] * 8], "layer": 0, "filters": [], "class": "wolf"}, ["Unknown class 'wolf'"]),
    ],
)
def test_bad_classes_are_refused_in_one_sentence(cclient: TestClient, path: str, body: dict, words: list[str]) -> None:
    response = cclient.post(path, json=body)
    refused(response, 400, *words)
    message = response.json()["error"]
    assert message.endswith(".") and message.count(". ") == 0, message  # one sentence


def test_classes_on_an_unconditional_model_and_bad_class_fields(cclient: TestClient, client: TestClient) -> None:
    refused(client.post("/api/sheet", json={"n": 2, "class": "cat"}), 400, "unconditional", "no classes")
    refused(client.post("/api/sheet", json={"n": 2, "class": 0}), 400, "unconditional")
    refused(client.post("/api/classes", json={"z": [[0.0] * 8]}), 400, "unconditional")
    refused(cclient.post("/api/sheet", json={"n": 2, "class": 1.5}), 422, "class")
    refused(cclient.post("/api/sheet", json={"n": 2, "class": ""}), 422, "class")
    refused(cclient.post("/api/classes", json={"z": [[0.0] * 7]}), 400, "length 7", "vectors of 8")


def test_the_server_benchmark_times_a_conditional_model(conditional: Explorer) -> None:
    """`dcgan serve --benchmark` on a conditional run: every request names a class, so none is refused."""
    from dcgan.web.timing import measure

    timings = measure(conditional, repeats=1)
    assert [t.request for t in timings][-2:] == [
        "8 z in each of 3 classes",
        "projection of an upload (100 steps, 2 restarts)",
    ]
    assert len(timings) == 7 and all(t.fastest_ms > 0 and t.response_kb > 1 for t in timings)


def test_a_conditional_run_is_served_with_its_classes(tiny_conditional_run: Path) -> None:
    from dcgan.run import Run

    explorer = Explorer.from_checkpoint(tiny_conditional_run)
    client = TestClient(create_app(explorer))
    assert client.get("/api/info").json()["classes"] == ["light", "dark"]
    answer = client.post("/api/sheet", json={"n": 3, "class": "dark"}).json()
    dark = ClassGenerator(Run.open(tiny_conditional_run).generator(), 1)
    want = pixels(generate(dark, latents(3, 8, "uniform", 0), plan=explorer.plan))
    assert all(close(decode(src), w.repeat(3, axis=-1)) for src, w in zip(answer["images"], want))  # grey as RGB
