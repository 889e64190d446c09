"""The discriminator as a feature extractor (paper section 5): D's features through a linear L2-SVM.

- `features`: D's conv maps max-pooled to a grid and concatenated, batchnorm recomputed, cached on disk.
- `svm`: a float32 torch L2-SVM (squared hinge, one-vs-rest) that fits 50,000 x 28,672 features in memory.
- `protocols`: full labels (the paper's CIFAR-10 table) and few labels (its SVHN 1,000-label table).
- `run`: `probe()`, which runs them for a trained D, a random D of the same shape and raw pixels.
"""

from dcgan.probe.features import extract_features, feature_dim, pixel_features, recompute_batchnorm
from dcgan.probe.protocols import DEFAULT_C, ProtocolResult, draw_labelled, few_labels, full_labels, validation_split
from dcgan.probe.run import FEATURE_SETS, ProbeReport, ProbeSettings, paper_accuracy, probe, random_discriminator
from dcgan.probe.svm import LinearSVM, Standardizer, fit_standardizer, fit_svm

__all__ = [
    "DEFAULT_C",
    "FEATURE_SETS",
    "LinearSVM",
    "ProbeReport",
    "ProbeSettings",
    "ProtocolResult",
    "Standardizer",
    "draw_labelled",
    "extract_features",
    "feature_dim",
    "few_labels",
    "fit_standardizer",
    "fit_svm",
    "full_labels",
    "paper_accuracy",
    "pixel_features",
    "probe",
    "random_discriminator",
    "recompute_batchnorm",
    "validation_split",
]
