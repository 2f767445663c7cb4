"""OpenFace nn4.small2 in torch: the network, and loading of a weights file the user supplies.

The architecture follows OpenFace's `nn4.small2.def.lua` (a smaller FaceNet NN4): 96x96 RGB in
[0, 1], channels first; a 128-d L2-normalised embedding out.

OpenFace published its trained weights only as a Lua Torch `.t7` model, which cannot be fetched on
this machine; `load_nn4_small2` reads a PyTorch state_dict (`torch.save(net.state_dict(), path)`,
or a dict holding it under "state_dict") whose keys and shapes match `NN4Small2`. A converter from
the `.t7` file would map each Torch layer onto these names in order; none is shipped here.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn(cin, cout, k, stride=1, padding=0):
    """Convolution, batch norm, ReLU: the unit every layer of nn4.small2 is made of."""
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, padding), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def depth_concat(maps):
    """Torch7's nn.DepthConcat: concatenate on channels, zero-padding smaller maps to the largest
    size with the smaller map centred (offset rounded down). Pool branches without padding rely on it."""
    h = max(m.shape[2] for m in maps)
    w = max(m.shape[3] for m in maps)
    padded = []
    for m in maps:
        dh, dw = h - m.shape[2], w - m.shape[3]
        padded.append(F.pad(m, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2)) if dh or dw else m)
    return torch.cat(padded, dim=1)


class Inception(nn.Module):
    """dpnn's nn.Inception: a reduce-then-convolve branch per kernel size, a pool branch (optionally
    projected by a 1x1 convolution) and an optional plain 1x1 branch, concatenated in that order."""

    def __init__(self, cin, kernels, strides, outputs, reduces, pool, pool_proj=None, one_by_one=None):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Sequential(conv_bn(cin, r, 1), conv_bn(r, o, k, s, (k - 1) // 2))
            for k, s, o, r in zip(kernels, strides, outputs, reduces))
        self.pool = pool
        self.pool_proj = conv_bn(cin, pool_proj, 1) if pool_proj else None
        self.one_by_one = conv_bn(cin, one_by_one, 1) if one_by_one else None
        self.out_channels = sum(outputs) + (pool_proj or cin) + (one_by_one or 0)

    def forward(self, x):
        maps = [branch(x) for branch in self.convs]
        pooled = self.pool(x)
        maps.append(self.pool_proj(pooled) if self.pool_proj is not None else pooled)
        if self.one_by_one is not None:
            maps.append(self.one_by_one(x))
        return depth_concat(maps)


def l2_pool():
    # Torch7's SpatialLPPooling(p=2, 3x3, stride 1): sqrt of the sum of squares, no padding
    return nn.LPPool2d(2, 3, stride=1)


class NN4Small2(nn.Module):
    INPUT_SIZE = 96
    EMBEDDING_DIM = 128

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            conv_bn(3, 64, 7, 2, 3),                          # 48x48
            nn.MaxPool2d(3, 2, 1),                            # 24x24
            nn.LocalResponseNorm(5, 1e-4, 0.75),
            conv_bn(64, 64, 1),
            conv_bn(64, 192, 3, 1, 1),
            nn.LocalResponseNorm(5, 1e-4, 0.75),
            nn.MaxPool2d(3, 2, 1),                            # 12x12
        )
        self.inception_3a = Inception(192, (3, 5), (1, 1), (128, 32), (96, 16), nn.MaxPool2d(3, 1, 1), 32, 64)
        self.inception_3b = Inception(256, (3, 5), (1, 1), (128, 64), (96, 32), l2_pool(), 64, 64)
        self.inception_3c = Inception(320, (3, 5), (2, 2), (256, 64), (128, 32), nn.MaxPool2d(3, 2))   # 6x6
        self.inception_4a = Inception(640, (3, 5), (1, 1), (192, 64), (96, 32), l2_pool(), 128, 256)
        self.inception_4e = Inception(640, (3, 5), (2, 2), (256, 128), (160, 64), nn.MaxPool2d(3, 2))  # 3x3
        self.inception_5a = Inception(1024, (3,), (1,), (384,), (96,), l2_pool(), 96, 256)
        self.inception_5b = Inception(736, (3,), (1,), (384,), (96,), nn.MaxPool2d(3, 1, 1), 96, 256)
        self.pool = nn.AvgPool2d(3, 1)
        self.linear = nn.Linear(736, self.EMBEDDING_DIM)

    def stages(self):
        return [("stem", self.stem)] + [(n, getattr(self, n)) for n in (
            "inception_3a", "inception_3b", "inception_3c", "inception_4a", "inception_4e",
            "inception_5a", "inception_5b")]

    def forward(self, x):
        if x.shape[1:] != (3, self.INPUT_SIZE, self.INPUT_SIZE):
            raise ValueError(f"nn4.small2 takes (N, 3, 96, 96) inputs, got {tuple(x.shape)}")
        for _, stage in self.stages():
            x = stage(x)
        x = self.pool(x).flatten(1)
        return F.normalize(self.linear(x), p=2, dim=1)


class WeightsError(ValueError):
    pass


def load_nn4_small2(path) -> NN4Small2:
    """An eval-mode NN4Small2 with the weights in `path`; a clear WeightsError when they do not fit."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"OpenFace weights file {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(f"{path} is not a PyTorch weights file: {e}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path} holds a {type(state).__name__}, not a state_dict")
    net = NN4Small2()
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        def few(keys):
            return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
        problems = [f"missing {few(missing)}" if missing else "",
                    f"unexpected {few(unexpected)}" if unexpected else "",
                    f"wrong shape for {few(wrong)}" if wrong else ""]
        raise WeightsError(f"{path} does not fit nn4.small2: " + "; ".join(p for p in problems if p))
    net.load_state_dict(state)
    return net.eval()
