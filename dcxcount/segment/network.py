"""The specialist network: a small U-Net that predicts cellpose flows.

The network maps one normalised image channel to three maps at the same
resolution: the Y and X flows (scaled like cellpose's, five times the unit
flows of :func:`cellpose.dynamics.labels_to_flows`) and the cell-probability
logit. Masks come from those maps through :func:`cellpose.dynamics.compute_masks`,
so the bundled model and Cellpose-SAM share one mask reconstruction.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FlowUNet"]


def _block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class FlowUNet(nn.Module):
    """U-Net with ``len(widths) - 1`` downsamplings and a 3-channel flow head.

    Parameters
    ----------
    widths : tuple of int
        Feature channels per resolution level, finest first. The default
        (16, 32, 64, 128) gives a receptive field of about 90 px, several cell
        diameters at the model's pixel size, at ~0.5 M parameters.
    in_channels : int
        Number of input image channels.
    """

    def __init__(self, *, widths: tuple[int, ...] = (16, 32, 64, 128), in_channels: int = 1):
        super().__init__()
        self.widths = tuple(widths)
        self.down = nn.ModuleList()
        previous = in_channels
        for width in self.widths:
            self.down.append(_block(previous, width))
            previous = width
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for coarse, fine in zip(self.widths[:0:-1], self.widths[-2::-1]):
            self.up.append(nn.ConvTranspose2d(coarse, fine, 2, stride=2))
            self.merge.append(_block(2 * fine, fine))
        self.head = nn.Conv2d(self.widths[0], 3, 1)

    @property
    def stride(self) -> int:
        """Input sizes must be multiples of this."""
        return 2 ** (len(self.widths) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level, block in enumerate(self.down):
            if level:
                x = nn.functional.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        skips.pop()
        for up, merge in zip(self.up, self.merge):
            x = merge(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)
