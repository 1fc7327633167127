"""How an explanation map becomes a picture, shared by `specc visualize` (specc_viz) and
`specc predict` on explanation models. numpy is imported on use: the core stays light."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def map_to_rgb(m: np.ndarray) -> np.ndarray:
    """A map (C, H, W) of any sign -> (H, W, 3) uint8: scaled by its largest |value|, zero at
    grey (a colour map for 3 channels, their mean in grey for any other count)."""
    import numpy as np

    m = np.asarray(m, dtype=np.float64)
    if m.shape[0] != 3:
        m = m.mean(axis=0, keepdims=True)
    peak = np.abs(m).max()
    scaled = 0.5 + 0.5 * (m / peak if peak > 0 else m)
    rgb = np.clip(np.rint(scaled * 255), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    return np.repeat(rgb, 3, axis=2) if rgb.shape[2] == 1 else rgb
