"""The web server's JSON API: right answers, a clear 4xx for every bad input, and no cross-talk between requests."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient

from dcgan.inspection import drop_filters
from dcgan.latent import load_z, vector_arithmetic
from dcgan.sample import generate, latents, to_uint8
from dcgan.web.explorer import Explorer
from dcgan.web.server import is_local


def decode(data_url: str) -> np.ndarray:
    """A `data:image/png;base64,...` URL -> (H, W, C) uint8."""
    assert data_url.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def pixels(images: torch.Tensor) -> np.ndarray:
    """What the server's PNGs should hold for images in [-1, 1]: (N, H, W, C) uint8."""
    return to_uint8(images).permute(0, 2, 3, 1).numpy()


def close(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to one grey level (channels-last convolutions round a little differently)."""
    return a.shape == b.shape and int(np.abs(a.astype(int) - b.astype(int)).max()) <= 1


def png_bytes(size: tuple[int, int] = (40, 30), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, (128,) * len(mode)).save(buffer, format="PNG")
    return buffer.getvalue()


def sheet_z(explorer: Explorer, n: int = 12, seed: int = 3) -> list[list[float]]:
    return latents(n, explorer.generator.nz, explorer.prior, seed).tolist()


# ----------------------------------------------------------------------------------------------- right answers


def test_page_and_its_assets_are_served_by_the_server_itself(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert asset in page.text
        assert client.get(asset).status_code == 200
    assert "http://" not in page.text and "https://" not in page.text  # nothing fetched from elsewhere


def test_info_describes_the_model(client: TestClient, explorer: Explorer) -> None:
    info = client.get("/api/info").json()
    g = explorer.generator
    assert (info["nz"], info["image_size"], info["channels"]) == (g.nz, g.image_size, g.channels)
    assert info["layers"] == [g.blocks[i][0].out_channels for i in range(len(g.blocks) - 1)]
    assert info["limits"]["upload_mb"] == 5


def test_sheet_numbers_are_the_ones_dcgan_sample_gives(client: TestClient, explorer: Explorer) -> None:
    answer = client.post("/api/sheet", json={"seed": 7, "n": 6}).json()
    z = latents(6, explorer.generator.nz, explorer.prior, 7)
    assert np.allclose(answer["z"], z.numpy())
    expected = pixels(generate(explorer.generator, z, plan=explorer.plan))  # drawn as the server draws
    assert all(close(decode(src), want) for src, want in zip(answer["images"], expected))
    more = client.post("/api/sheet", json={"seed": 7, "start": 4, "n": 4}).json()  # "more samples" extends it
    assert np.allclose(more["z"][:2], answer["z"][4:])
    sheet = decode(client.post("/api/sheet.png", json={"seed": 7, "n": 6}).json()["image"])
    assert sheet.shape[0] > explorer.generator.image_size


def test_arithmetic_is_vector_arithmetic_of_the_group_means(client: TestClient, explorer: Explorer) -> None:
    z = sheet_z(explorer)
    body = {"a": z[0:3], "b": z[3:6], "c": z[6:9], "noise": 0.3, "seed": 5}
    answer = client.post("/api/arithmetic", json=body).json()
    t = torch.tensor
    want = vector_arithmetic(explorer.generator, t(z[0:3]), t(z[3:6]), t(z[6:9]), noise=0.3, seed=5)
    assert np.allclose(answer["z"][0], want.result.numpy(), atol=1e-6)
    assert len(answer["neighbours"]) == 8 and len(answer["z"]) == 9
    assert close(decode(answer["result"]), pixels(want.result_images[:1])[0])
    s = explorer.generator.image_size
    assert decode(answer["grid"]).shape[:2] == (3 * s + 8, 3 * s + 8)  # 3x3 with 2-pixel padding


def test_walk_starts_and_ends_at_the_two_samples(client: TestClient, explorer: Explorer) -> None:
    z = sheet_z(explorer)
    for method in ("linear", "slerp"):
        answer = client.post("/api/walk", json={"z0": z[0], "z1": z[1], "steps": 5, "method": method}).json()
        assert len(answer["images"]) == 5
        ends = pixels(generate(explorer.generator, torch.tensor([z[0], z[1]]), plan=explorer.plan))
        assert close(decode(answer["images"][0]), ends[0]) and close(decode(answer["images"][-1]), ends[1])


def test_direction_passes_through_the_start_at_zero(client: TestClient, explorer: Explorer) -> None:
    z = sheet_z(explorer)
    answer = client.post("/api/direction", json={"a": z[:2], "b": z[2:4], "start": z[5], "steps": 5}).json()
    assert answer["amounts"][2] == 0.0
    assert np.allclose(answer["z"][2], z[5], atol=1e-6)
    direction = np.mean(z[:2], 0) - np.mean(z[2:4], 0)
    assert np.allclose(np.subtract(answer["z"][3], answer["z"][2]), direction * 0.75, atol=1e-5)


def test_dropping_filters_changes_the_images_and_leaves_the_generator_as_it_was(
    client: TestClient, explorer: Explorer
) -> None:
    z = sheet_z(explorer, 4)
    none = client.post("/api/filters", json={"z": z, "layer": 1, "filters": []}).json()
    assert all(close(decode(a), decode(b)) for a, b in zip(none["images"], none["original"]))
    count = explorer.info()["layers"][1]
    every = client.post("/api/filters", json={"z": z, "layer": 1, "filters": list(range(count))}).json()
    want = pixels(drop_filters(explorer.generator, torch.tensor(z), 1, list(range(count))))
    assert close(decode(every["images"][0]), want[0])
    assert not np.array_equal(decode(every["images"][0]), decode(every["original"][0]))
    after = client.post("/api/sheet", json={"seed": 3, "n": 4}).json()  # the hook is gone afterwards
    assert np.array_equal(decode(after["images"][0]), decode(none["original"][0]))


def test_upload_is_projected_into_z(client: TestClient, explorer: Explorer) -> None:
    """An image G drew itself comes back far closer than a random z gets, and far closer than random pixels do;
    the error the page shows is that of the z it returns."""
    s, nz = explorer.generator.image_size, explorer.generator.nz
    drawn = generate(explorer.generator, latents(17, nz, explorer.prior, seed=9))
    own = Image.fromarray(pixels(drawn[:1])[0])
    random_z_error = float((drawn[1:] - drawn[:1]).pow(2).mean())
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (s, s, 3), dtype=np.uint8))
    errors = {}
    for name, image in (("own", own), ("noise", noise)):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        files = {"file": (f"{name}.png", buffer.getvalue(), "image/png")}
        answer = client.post("/api/project", files=files, data={"steps": "40", "restarts": "2"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert len(body["z"]) == 1 and len(body["z"][0]) == nz
        target = decode(body["target"])
        assert np.array_equal(target, np.asarray(image)), "the target is the upload, as G sees it"
        reconstruction = generate(explorer.generator, torch.tensor(body["z"]))[0].permute(1, 2, 0).numpy()
        mse = float(((reconstruction - (target / 127.5 - 1)) ** 2).mean())
        assert body["error"] == pytest.approx(mse, rel=1e-3, abs=1e-6), "the error is that of the returned z"
        drawn_by_server = generate(explorer.generator, torch.tensor(body["z"]), plan=explorer.plan)
        assert close(decode(body["image"]), pixels(drawn_by_server)[0])
        errors[name] = body["error"]
    assert errors["own"] < 0.1 * random_z_error and errors["own"] < 0.01 * errors["noise"], (errors, random_z_error)


def test_z_file_downloads_and_loads_back(client: TestClient, explorer: Explorer, tmp_path: Path) -> None:
    z = sheet_z(explorer, 3)
    answer = client.post("/api/z.npy", json={"z": z, "name": "walk"})
    assert answer.status_code == 200
    assert answer.headers["content-disposition"] == 'attachment; filename="walk.npy"'
    (tmp_path / "walk.npy").write_bytes(answer.content)
    assert torch.allclose(load_z(tmp_path / "walk.npy", explorer.generator.nz), torch.tensor(z))


def test_host_locality() -> None:
    assert is_local("127.0.0.1") and is_local("localhost") and is_local("::1") and is_local("127.0.1.1")
    assert not is_local("0.0.0.0") and not is_local("192.168.1.5") and not is_local("::")


def test_serve_binds_to_localhost_by_default_and_warns_otherwise(
    tiny_run_rgb: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import uvicorn

    from dcgan.cli import main

    calls: list[dict[str, object]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    threads = torch.get_num_threads()
    try:
        assert main(["serve", str(tiny_run_rgb), "--threads", "1"]) == 0
        out = capsys.readouterr()
        assert calls[-1]["host"] == "127.0.0.1" and calls[-1]["port"] == 8000
        assert "http://127.0.0.1:8000/" in out.out and "this machine alone" in out.out and not out.err
        assert main(["serve", str(tiny_run_rgb), "--host", "0.0.0.0", "--port", "9001", "--threads", "1"]) == 0
        out = capsys.readouterr()
        assert calls[-1]["host"] == "0.0.0.0" and calls[-1]["port"] == 9001
        assert "warning" in out.err and "other machines" in out.err
    finally:
        torch.set_num_threads(threads)
    with pytest.raises(SystemExit):
        main(["serve", str(tiny_run_rgb), "--port", "70000"])
    assert main(["serve", str(tiny_run_rgb.parent / "missing")]) == 2
    assert "No such checkpoint" in capsys.readouterr().err


def test_benchmark_times_every_request_over_http(explorer: Explorer) -> None:
    from dcgan.web.timing import measure, table

    timings = measure(explorer, repeats=1)
    first_words = [t.request.split(" ")[0] for t in timings]
    assert first_words == ["sheet", "arithmetic", "walk,", "direction,", "16", "projection"]
    assert all(t.fastest_ms > 0 and t.response_kb > 1 for t in timings)
    assert table(timings).count("\n") == len(timings) + 1
