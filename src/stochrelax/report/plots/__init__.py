"""Figures of the thesis (Figs. 4.1–4.5, 5.3–5.9, section 5.1), three beyond it, and the study's.

Every figure function returns a :class:`matplotlib.figure.Figure` built without pyplot,
so no global figure state is created and no backend is selected: the figures render
with Agg when saved (:func:`~stochrelax.report.plots.style.save_figure`) and are freed with the last reference.

What needs the model (noise draws, predictions, confidences, features, calibration) is
computed by the small helpers of :mod:`~stochrelax.report.plots.measures`, which take tensors and
return tensors or numbers; the figure functions (:mod:`~stochrelax.report.plots.thesis`,
:mod:`~stochrelax.report.plots.beyond`, :mod:`~stochrelax.report.plots.study`) load a run (:func:`stochrelax.rundir.layout.load_run`),
call them and draw. Models are used in eval mode with their noise on (a stochastic
network is a stochastic predictor at test time too), under :func:`stochrelax.nn.rng.seeded`
so that a figure is the same every time it is drawn.

Functions that evaluate a model on the clean test set use the first
:data:`~stochrelax.report.plots.style.EVALUATION_IMAGES` test images of the ``data`` they are given; pass
``data.limit(test_limit=N)`` for fewer.
"""

from stochrelax.report.plots.beyond import (accuracy_vs_samples, certified_accuracy_curve, learned_noise_std,
                                            reliability_diagram)
from stochrelax.report.plots.measures import (accuracy_by_samples, block_features, calibration_bins, channel_norm_maps,
                                              confidences, default_heatmap_indices, draw_logits,
                                              expected_calibration_error, first_test_images, mean_curve,
                                              single_draw_accuracy, tsne_embedding)
from stochrelax.report.plots.study import forest_plot, robust_accuracy_vs_eps, robustness_and_certificates
from stochrelax.report.plots.style import DPI, EVALUATION_IMAGES, MissingData, save_figure
from stochrelax.report.plots.thesis import (accuracy_vs_budget, activation_heatmaps, clean_accuracy_bars,
                                            confidence_histograms, example_grid, learning_curves, noise_densities,
                                            training_distributions, tsne_features)

__all__ = [
    "MissingData", "DPI", "EVALUATION_IMAGES",
    # helpers (tensors in, tensors or numbers out)
    "first_test_images", "draw_logits", "block_features", "confidences", "calibration_bins",
    "expected_calibration_error", "accuracy_by_samples", "single_draw_accuracy", "channel_norm_maps",
    "default_heatmap_indices", "mean_curve", "tsne_embedding",
    # figures
    "noise_densities", "example_grid", "activation_heatmaps", "accuracy_vs_budget", "clean_accuracy_bars",
    "learning_curves", "confidence_histograms", "tsne_features", "training_distributions",
    "reliability_diagram", "accuracy_vs_samples", "certified_accuracy_curve", "learned_noise_std", "forest_plot",
    "robust_accuracy_vs_eps", "robustness_and_certificates", "save_figure",
]
