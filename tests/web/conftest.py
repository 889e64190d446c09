"""Fixtures for the web tests: an explorer on the tiny RGB run and a test client for its app."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient

from dcgan.web.explorer import Explorer
from dcgan.web.server import create_app


@pytest.fixture(scope="module")
def explorer(tiny_run_rgb: Path) -> Explorer:
    return Explorer.from_checkpoint(tiny_run_rgb)


@pytest.fixture(scope="module")
def client(explorer: Explorer) -> TestClient:
    return TestClient(create_app(explorer))
