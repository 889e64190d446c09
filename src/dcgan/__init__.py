"""dcgan: the DCGAN paper as a toolkit.

Train with `dcgan.train.train(dcgan.build_config(...), out)`; open what a run saved with `dcgan.Run.open(out)`.
"""

from dcgan.config import PRESETS, TrainConfig, build_config
from dcgan.data import ImageData, load_images
from dcgan.errors import CheckpointError, ConfigError, DataError, DcganError
from dcgan.models import Discriminator, Generator, sample_prior
from dcgan.run import Run, RunFolder, load_generator, resume_config
from dcgan.sample import generate, latents, write_samples

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
    "Run",
    "RunFolder",
    "TrainConfig",
    "build_config",
    "generate",
    "latents",
    "load_generator",
    "load_images",
    "resume_config",
    "sample_prior",
    "write_samples",
]
