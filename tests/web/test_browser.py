"""The page in a real headless browser (Debian's chromium driven by Playwright): clicks, sliders, uploads.

Set DCGAN_WEB_RUN to a run folder to drive the page with that model instead of the tiny test run, and
DCGAN_WEB_SCREENSHOT to a .png path to save a screenshot of the page at the end (the README's picture:
`DCGAN_WEB_RUN=/work/runs/faces64 DCGAN_WEB_SCREENSHOT=docs/images/web_page.png pytest tests/web/test_browser.py`).
"""

from __future__ import annotations

import io
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("playwright.sync_api", reason="needs Playwright for Python (pip install playwright)")
pytest.importorskip("uvicorn")
import uvicorn
from playwright.sync_api import Page, sync_playwright

from dcgan.latent import load_z
from dcgan.sample import latents
from dcgan.web.explorer import Explorer
from dcgan.web.server import create_app

from .test_server import close, decode

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def explorer(request: pytest.FixtureRequest) -> Explorer:
    run = os.environ.get("DCGAN_WEB_RUN") or request.getfixturevalue("tiny_run_rgb")
    return Explorer.from_checkpoint(run)


@contextmanager
def serving(explorer: Explorer) -> Iterator[str]:
    """`dcgan serve`'s app under uvicorn on a free local port, in a thread of this process; yields its URL."""
    port = free_port()
    app = create_app(explorer, local_only=True)
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not instance.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert instance.started, "the server did not start"
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(explorer: Explorer) -> Iterator[str]:
    with serving(explorer) as url:
        yield url


@pytest.fixture()
def page(tmp_path: Path) -> Iterator[Page]:
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True, args=args,
            viewport={"width": 1400, "height": 900}, accept_downloads=True,
        )  # fmt: skip
        browser.set_default_timeout(120_000)  # a busy CI machine; every step is far quicker alone
        yield browser.new_page()
        browser.close()


def settle(page: Page) -> None:
    """Wait until the page has no request in flight (debounced requests included)."""
    page.wait_for_timeout(200)
    page.wait_for_function("document.body.dataset.busy === '0'")


def state(page: Page, expression: str):  # type: ignore[no-untyped-def]
    return page.evaluate(f"() => {expression}")


def test_the_page_end_to_end(page: Page, server: str, explorer: Explorer, tmp_path: Path) -> None:
    page.goto(server)
    page.wait_for_selector("body[data-ready='1']")
    tiles = page.locator("#sheet .tile")
    assert tiles.count() == 64
    nz, prior = explorer.generator.nz, explorer.prior
    assert np.allclose(state(page, "dcganState.samples.map(s => s.z)"), latents(64, nz, prior, 0).numpy())

    # three samples into each group, and the arithmetic result read back from the page
    for group, picks in (("a", (0, 1, 2)), ("b", (3, 4, 5)), ("c", (6, 7, 8))):
        page.check(f"input[name='target'][value='{group}']")
        for i in picks:
            tiles.nth(i).click()
    settle(page)
    assert page.locator("#tray-a .tile").count() == 3 and page.locator("#sheet .tile.in-c").count() == 3
    shown = decode(page.get_attribute("#arith-result", "src") or "")
    z = latents(9, nz, prior, 0).tolist()
    want = explorer.arithmetic(z[0:3], z[3:6], z[6:9], noise=0.25, seed=0)
    assert close(shown, decode(want["result"]))
    assert page.locator("#arith-neighbours img").count() == 9
    with page.expect_download() as download:
        page.click("#arith-z")
    download.value.save_as(tmp_path / "arithmetic.npy")
    assert np.allclose(load_z(tmp_path / "arithmetic.npy", nz).numpy(), want["z"], atol=1e-6)
    assert (page.get_attribute("#arith-png", "href") or "").startswith("data:image/png;base64,")

    # a walk between two samples, moved with the slider
    page.check("input[name='target'][value='walk']")
    tiles.nth(10).click()
    tiles.nth(20).click()
    settle(page)
    slider = page.locator("#walk-slider")
    assert slider.is_enabled()
    first = page.get_attribute("#walk-frame", "src")
    assert close(decode(first or ""), decode(state(page, "dcganState.samples[10].src")))
    slider.focus()
    for _ in range(8):
        page.keyboard.press("ArrowRight")
    assert slider.input_value() == "8"
    assert page.get_attribute("#walk-frame", "src") == state(page, "dcganState.walk.images[8]")
    page.select_option("#walk-method", "slerp")
    settle(page)
    assert state(page, "dcganState.walk.images.length") == 17

    # the direction A - B, dragged from the start
    page.check("input[name='target'][value='start']")
    tiles.nth(30).click()
    settle(page)
    page.locator("#dir-slider").focus()
    page.keyboard.press("End")
    assert page.inner_text("#dir-amount") == "1.50"
    assert np.allclose(state(page, "dcganState.direction.z[8]"), latents(31, nz, prior, 0)[30].numpy(), atol=1e-6)

    # a filter switched off redraws the first 16 samples without it
    page.click("#filter-list button[data-filter='0']")
    settle(page)
    assert page.locator("#filter-list button.off").count() == 1
    want = explorer.drop(latents(16, nz, prior, 0).tolist(), 0, [0])
    assert close(decode(page.get_attribute("#filters-dropped", "src") or ""), decode(want["grid"]))

    # an uploaded image is projected and becomes a sample
    photo = tmp_path / "photo.png"
    faces = Path(__file__).resolve().parents[3] / "shared" / "data" / "faces" / "utkface64"  # ../shared of the repo
    real = sorted(faces.glob("*.jpg"))[:1] if faces.is_dir() and os.environ.get("DCGAN_WEB_RUN") else []
    with Image.open(real[0]) if real else Image.new("RGB", (50, 40), (200, 60, 30)) as picture:
        picture.save(photo)
    page.fill("#project-steps", "100" if real else "5")
    page.set_input_files("#upload", str(photo))
    page.wait_for_selector("#uploads .tile")
    settle(page)
    assert decode(page.get_attribute("#project-result", "src") or "").shape[0] == explorer.generator.image_size
    assert len(state(page, "dcganState.uploads[0].z")) == nz

    # a bad request is answered in words on the page
    page.fill("#seed", "-5")
    page.dispatch_event("#seed", "change")
    settle(page)
    assert "seed" in page.inner_text("#status") and "greater than or equal to 0" in page.inner_text("#status")

    if screenshot := os.environ.get("DCGAN_WEB_SCREENSHOT"):
        page.fill("#seed", "0")
        page.dispatch_event("#seed", "change")
        settle(page)
        page.check("input[name='target'][value='a']")
        save_screenshot(page, Path(screenshot))


def save_screenshot(page: Page, path: Path) -> None:
    """The whole page as a PNG of at most 256 colours (a README picture well under 1 MiB)."""
    image = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def test_numbered_sheet_downloads_as_png(page: Page, server: str, explorer: Explorer) -> None:
    """The "Numbered sheet" button downloads the sheet's grid as a PNG (each sample's number drawn on it)."""
    page.goto(server)
    page.wait_for_selector("body[data-ready='1']")
    with page.expect_download() as download:
        page.click("#sheet-png")
    path = download.value.path()
    with Image.open(path) as sheet:
        assert sheet.format == "PNG" and sheet.width > 8 * explorer.generator.image_size


# ----------------------------------------------------------------------------------------------- a conditional model
@pytest.fixture(scope="module")
def conditional() -> Explorer:
    """A class-conditional explorer: DCGAN_WEB_CONDITIONAL_RUN's run, else a tiny G of three named classes."""
    from .test_classes import conditional_generator

    run = os.environ.get("DCGAN_WEB_CONDITIONAL_RUN")
    return Explorer.from_checkpoint(run) if run else Explorer(conditional_generator(), 5, "pets/step-00000005.pt")


def test_a_conditional_model_draws_the_chosen_class_and_every_class(page: Page, conditional: Explorer) -> None:
    """The class picker redraws the same z in the chosen class, chosen samples stay chosen, and the every-class
    view shows one row per class. Set DCGAN_WEB_CONDITIONAL_SCREENSHOT to a .png path to keep a screenshot."""
    g = conditional.generator
    names = list(g.classes)
    with serving(conditional) as url:
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']")
        settle(page)
        assert page.is_visible("#class-picker") and page.is_visible("#every-class")
        labels = page.locator("#class option").all_inner_texts()
        assert len(labels) == g.num_classes and labels[1] in (names[1], f"1: {names[1]}")
        z = latents(64, g.nz, conditional.prior, 0)
        tiles = page.locator("#sheet .tile")
        first = conditional.sheet(0, 0, 2, 0)["images"]
        assert close(decode(state(page, "dcganState.samples[0].src")), decode(first[0]))
        # the every-class view: the first 8 samples in every class, then the ones picked for it
        first_eight = conditional.classes(z[:8].tolist())
        assert page.locator("#classes-rows .class-name").all_inner_texts() == names
        shown = page.locator("#classes-rows img")
        assert shown.count() == 8 * g.num_classes
        assert close(decode(shown.nth(8 + 2).get_attribute("src") or ""), decode(first_eight["images"][1][2]))
        last = g.num_classes - 1
        page.check("input[name='target'][value='classes']")
        tiles.nth(3).click()
        tiles.nth(5).click()
        settle(page)
        assert page.locator("#classes-tray .tile").count() == 2
        want = conditional.classes(z[[3, 5]].tolist())
        assert shown.count() == 2 * g.num_classes and page.get_attribute("#classes-png", "href") == want["grid"]
        assert close(decode(shown.nth(2 * last + 1).get_attribute("src") or ""), decode(want["images"][last][1]))
        # walk ends chosen in class 0, then another class: the same z, redrawn
        page.check("input[name='target'][value='walk']")
        tiles.nth(10).click()
        tiles.nth(20).click()
        settle(page)
        page.select_option("#class", str(last))
        settle(page)
        assert np.allclose(state(page, "dcganState.samples.map(s => s.z)"), z.numpy())
        redrawn = conditional.sheet(0, 10, 1, last)["images"][0]
        assert close(decode(state(page, "dcganState.samples[10].src")), decode(redrawn))
        assert close(decode(page.get_attribute("#walk-frame", "src") or ""), decode(redrawn))
        assert close(decode(page.get_attribute("#walk-ends .tile img", "src") or ""), decode(redrawn))
        assert page.locator("#walk-ends .tile").count() == 2 and page.locator("#sheet .tile.in-walk").count() == 2
        if screenshot := os.environ.get("DCGAN_WEB_CONDITIONAL_SCREENSHOT"):
            save_screenshot(page, Path(screenshot))
