"""dcgan: the DCGAN paper as a toolkit."""

from dcgan.config import PRESETS, TrainConfig, build_config
from dcgan.data import ImageData, load_images
from dcgan.errors import CheckpointError, ConfigError, DataError, DcganError
from dcgan.models import Discriminator, Generator, sample_prior

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DcganError",
    "Discriminator",
    "Generator",
    "ImageData",
    "TrainConfig",
    "build_config",
    "load_images",
    "sample_prior",
]
