"""Spatial Transformer Networks: the module, its geometry functions, and geometric style
(deep-feature matches, affine/TPS warps, their fit and pictures)."""

from __future__ import annotations

from .geometry import (
    affine_grid,
    compose_affine,
    control_grid,
    from_pixel_transform,
    identity_affine,
    invert_affine,
    out_of_bounds_penalty,
    sample,
    to_pixel_transform,
    tps_grid,
    tps_weights,
    transform_boxes,
    transform_points,
)
from .geostyle import Confidence, Geometry, estimate_warp
from .transformer import SpatialTransformer, localization_net, rotation_equivariance_loss
from .warps import MIN_JACOBIAN, AffineWarp, TPSWarp, jacobian_determinant

__all__ = [
    "MIN_JACOBIAN", "AffineWarp", "Confidence", "Geometry", "SpatialTransformer", "TPSWarp",
    "affine_grid", "compose_affine",
    "control_grid", "estimate_warp", "from_pixel_transform", "identity_affine", "invert_affine",
    "jacobian_determinant", "localization_net", "out_of_bounds_penalty", "sample",
    "rotation_equivariance_loss", "to_pixel_transform", "tps_grid", "tps_weights", "transform_boxes",
    "transform_points",
]
