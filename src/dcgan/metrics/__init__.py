"""Sample-quality metrics: FID, KID, Inception Score and improved precision/recall, on pluggable features.

- `evaluate(generator, data=...)`: what `dcgan evaluate` does; `TrainingEvaluator`: the same, cheap enough to
  call during training.
- Feature extractors: the FID Inception (`inception`), or domain classifiers fitted by `fit` (`dcgan extractor
  fit`), looked up by name (`lenet-fashion-mnist`) or path with `load_features`.
- `memorisation_check`: nearest training images of generated samples.
- For a class-conditional generator: `per_class_fid` (`intrafid`) and `recognised_classes` (`recognised`: how
  often a classifier reads the class that was asked for).

Each metric lives in its own module and registers itself by name in `METRICS` when imported (below).
"""

from dcgan.metrics.classes import class_statistics
from dcgan.metrics.coverage import group_coverage
from dcgan.metrics.evaluate import Evaluation, evaluate, evaluate_images, generated_features, score
from dcgan.metrics.extractors import FeatureExtractor, LeNet, SmallCNN, load_features, save_extractor
from dcgan.metrics.fid import FrechetDistance, frechet_distance
from dcgan.metrics.fit import fit, fit_extractor
from dcgan.metrics.inception import fid_inception_v3, load_inception
from dcgan.metrics.inception_score import inception_score
from dcgan.metrics.intra_fid import per_class_fid
from dcgan.metrics.kid import kernel_inception_distance
from dcgan.metrics.nearest import memorisation_check, nearest_neighbours, write_memorisation_check
from dcgan.metrics.precision_recall import precision_recall
from dcgan.metrics.recognised import recognised_classes
from dcgan.metrics.reference import Reference, reference_features
from dcgan.metrics.registry import METRICS, Metric, parse_metrics
from dcgan.metrics.training import TrainingEvaluator

__all__ = [
    "METRICS",
    "Evaluation",
    "FeatureExtractor",
    "FrechetDistance",
    "LeNet",
    "Metric",
    "Reference",
    "SmallCNN",
    "TrainingEvaluator",
    "class_statistics",
    "evaluate",
    "evaluate_images",
    "fid_inception_v3",
    "fit",
    "fit_extractor",
    "frechet_distance",
    "generated_features",
    "group_coverage",
    "inception_score",
    "kernel_inception_distance",
    "load_features",
    "load_inception",
    "memorisation_check",
    "nearest_neighbours",
    "parse_metrics",
    "per_class_fid",
    "precision_recall",
    "recognised_classes",
    "reference_features",
    "save_extractor",
    "score",
    "write_memorisation_check",
]
