"""The memorisation check: for generated samples, the nearest training images in the extractor's feature space.

The paper argues its samples are not memorised training images. This shows it: a picture of samples next to
their nearest training images, and a histogram of each sample's distance to its nearest training image beside
the same distance for held-out test images. A generator that copies its training set has samples much closer
to the training set than unseen real images are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torchvision.utils import make_grid

from dcgan.data import ImageData, load_images, registry
from dcgan.errors import ConfigError
from dcgan.metrics.evaluate import generated_features
from dcgan.metrics.extractors import FeatureExtractor, load_features
from dcgan.metrics.reference import reference_features
from dcgan.models import Generator


def nearest_neighbours(
    queries: torch.Tensor, keys: torch.Tensor, k: int, chunk: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query row, the k nearest key rows by Euclidean distance: (distances (Q, k), indices (Q, k))."""
    k = min(k, keys.shape[0])
    dists, idxs = [], []
    for part in queries.double().split(chunk):
        d, i = torch.cdist(part, keys.double()).topk(k, dim=1, largest=False)
        dists.append(d)
        idxs.append(i)
    return torch.cat(dists), torch.cat(idxs)


@dataclass
class NearestResult:
    samples: torch.Tensor  # uint8 (n, C, S, S): the generated images shown
    neighbours: torch.Tensor  # uint8 (n, k, C, S, S): their nearest training images, nearest first
    distances: torch.Tensor  # (n, k)
    sample_nearest: torch.Tensor  # (m,) each of m generated samples' distance to its nearest training image
    test_nearest: torch.Tensor  # (m',) the same for held-out test images

    def summary(self) -> dict[str, Any]:
        """Median distances, and the fraction of samples closer to the training set than 99% of test images."""
        out: dict[str, Any] = {
            "samples": len(self.sample_nearest),
            "median_distance_samples": float(self.sample_nearest.median()),
            "test_images": len(self.test_nearest),
        }
        if len(self.test_nearest):
            threshold = float(self.test_nearest.quantile(0.01))
            out["median_distance_test"] = float(self.test_nearest.median())
            out["test_1st_percentile"] = threshold
            # Samples closer to the training set than 99% of unseen real images are: candidates for copies.
            out["fraction_samples_below_test_1st_percentile"] = float((self.sample_nearest < threshold).double().mean())
        return out


def memorisation_check(
    generator: Generator,
    *,
    data: str | ImageData,
    root: str | Path | None = None,
    features: str | Path | FeatureExtractor | None = None,
    show: int = 8,
    k: int = 5,
    n: int = 1000,
    seed: int = 0,
    prior: str | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 250,
    progress: bool = False,
) -> NearestResult:
    """Find the nearest training images of generated samples (and of test images, as the yardstick).

    Args:
        generator: the generator to check.
        data, root: its training data, by name or loaded (the train split is searched; for the standard sets
            with a separate test split, test images are the yardstick).
        features: the feature space (as for `evaluate`).
        show: samples to show in the picture (the first `show` of the seed).
        k: neighbours per shown sample.
        n: generated samples (and at most as many test images) for the distance histogram.
    """
    if show < 1 or k < 1 or n < show:
        raise ConfigError(f"need show >= 1, k >= 1 and n >= show; got show={show}, k={k}, n={n}.")
    if isinstance(features, FeatureExtractor):
        extractor = features.to(device)
    else:
        extractor = load_features(features, data.name if isinstance(data, ImageData) else data, device=device)
    generator.to(device)
    if isinstance(data, ImageData):
        train = data
    else:
        train = load_images(data, root=root, image_size=generator.image_size, channels=generator.channels)
    reference = reference_features(extractor, train, batch_size=batch_size, progress=progress)
    fake, images = generated_features(generator, extractor, n, prior=prior, seed=seed, batch_size=batch_size,
                                      keep_images=True)  # fmt: skip
    assert images is not None
    dist, idx = nearest_neighbours(fake.features, reference.features, k)
    test_nearest = torch.empty(0, dtype=torch.float64)
    # Only a separate test split is a yardstick: elsewhere "test" may be the training images again.
    entry = registry.find(data) if isinstance(data, str) else None
    if isinstance(data, str) and entry is not None and entry.separate_test:
        test = load_images(data, root=root, image_size=generator.image_size, channels=generator.channels, split="test")
        test_features = extractor.extract(test.images[:n], batch_size=batch_size).features
        test_nearest = nearest_neighbours(test_features, reference.features, 1)[0][:, 0]
    return NearestResult(images[:show], train.images[idx[:show]], dist[:show], dist[:, 0], test_nearest)


def save_nearest_figure(result: NearestResult, path: str | Path, scale: int | None = None) -> Path:
    """Rows of: a sample, a gap, then its nearest training images (nearest first).

    Small images are enlarged (nearest-neighbour, by `scale`; default: to at least 64 px) so they can be seen.
    """
    from PIL import Image

    n, k = result.neighbours.shape[:2]
    blank = torch.full_like(result.samples[:1], 255)
    tiles = []
    for i in range(n):
        tiles += [result.samples[i : i + 1], blank, result.neighbours[i]]
    grid = make_grid(torch.cat(tiles), nrow=k + 2, padding=2, pad_value=255)
    scale = scale or max(1, 64 // int(result.samples.shape[-1]))
    grid = grid.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)
    array = grid.permute(1, 2, 0).numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array[..., 0] if result.samples.shape[1] == 1 else array).save(path)
    return path


def save_distance_histogram(result: NearestResult, path: str | Path, title: str = "") -> Path:
    """Histogram of nearest-training-image distances: generated samples against held-out test images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    values = [result.sample_nearest] + ([result.test_nearest] if len(result.test_nearest) else [])
    top = float(max(v.max() for v in values))
    bins = torch.linspace(0, top, 41).tolist()
    ax.hist(result.sample_nearest.numpy(), bins=bins, alpha=0.6, label=f"generated ({len(result.sample_nearest)})")
    if len(result.test_nearest):
        label = f"real test images ({len(result.test_nearest)})"
        ax.hist(result.test_nearest.numpy(), bins=bins, alpha=0.6, label=label)
    ax.set_xlabel("distance to the nearest training image (feature space)")
    ax.set_ylabel("images")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_memorisation_check(result: NearestResult, out: str | Path, title: str = "") -> dict[str, Any]:
    """Write `nearest.png`, `nearest_distances.png` and `nearest.json` (the summary) into `out`."""
    out = Path(out)
    save_nearest_figure(result, out / "nearest.png")
    save_distance_histogram(result, out / "nearest_distances.png", title)
    summary = {**result.summary(), "figure": "nearest.png", "histogram": "nearest_distances.png"}
    (out / "nearest.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
