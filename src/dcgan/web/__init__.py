"""A local web page to explore a trained generator: `dcgan serve RUN_DIR` (see `dcgan.web.server`)."""

from dcgan.web.explorer import Explorer
from dcgan.web.limits import ServerLimits

__all__ = ["Explorer", "ServerLimits", "create_app"]


def __getattr__(name: str) -> object:
    if name == "create_app":  # FastAPI is imported only when the server is wanted
        from dcgan.web.server import create_app

        return create_app
    raise AttributeError(name)
