"""Spatial Transformer Networks: the module and its geometry functions."""

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
    transform_boxes,
    transform_points,
)
from .transformer import SpatialTransformer, localization_net

__all__ = [
    "SpatialTransformer", "affine_grid", "compose_affine", "control_grid", "from_pixel_transform",
    "identity_affine", "invert_affine", "localization_net", "out_of_bounds_penalty", "sample",
    "to_pixel_transform", "tps_grid", "transform_boxes", "transform_points",
]
