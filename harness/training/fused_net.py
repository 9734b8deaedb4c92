"""The fused network: K members of the LeNet family (harness/variants/lenet.py: conv1, bn1, pool, conv2,
bn2, fc1, fc2, fc3, relu, drop) as one network. Member k's image channels are block k of the
input's channels; the convolutions are grouped convolutions, BatchNorm runs over K×C channels (each
member its own batch statistics and running stats), the linear layers are batched matmuls over a
leading member axis, and dropout draws each member's masks from its own generator."""

from __future__ import annotations

import torch
from torch import nn


def _grouped_conv(convs: list[nn.Conv2d]) -> nn.Conv2d:
    c = convs[0]
    k = len(convs)
    fused = nn.Conv2d(k * c.in_channels, k * c.out_channels, c.kernel_size, c.stride, c.padding, groups=k)
    with torch.no_grad():
        fused.weight.copy_(torch.cat([m.weight for m in convs]))
        fused.bias.copy_(torch.cat([m.bias for m in convs]))
    return fused


def _wide_batchnorm(norms: list[nn.Module]) -> nn.Module:
    if not isinstance(norms[0], nn.BatchNorm2d):
        return nn.Identity()
    b = norms[0]
    fused = nn.BatchNorm2d(len(norms) * b.num_features, eps=b.eps, momentum=b.momentum)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(fused, name).copy_(torch.cat([getattr(m, name) for m in norms]))
        fused.num_batches_tracked.copy_(b.num_batches_tracked)
    return fused


class StackedLinear(nn.Module):
    """K linear layers as one batched matmul over a leading member axis: (K, B, in) -> (K, B, out)."""

    def __init__(self, layers: list[nn.Linear]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in layers]).clone())  # K × out × in
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in layers]).unsqueeze(1).clone())  # K × 1 × out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight.transpose(1, 2))


def dropout_p(model: nn.Module) -> float:
    return model.drop.p if isinstance(model.drop, nn.Dropout) else 0.0


class FusedLeNet(nn.Module):
    """K LeNets as one network: input B × (K·C) × H × W (member k's image channels in block k),
    output K × B × classes. Dropout draws member k's masks from `generators[k]`."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.k = len(members)
        self.conv1 = _grouped_conv([m.conv1 for m in members])
        self.bn1 = _wide_batchnorm([m.bn1 for m in members])
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = _grouped_conv([m.conv2 for m in members])
        self.bn2 = _wide_batchnorm([m.bn2 for m in members])
        self.fc1, self.fc2, self.fc3 = (StackedLinear([getattr(m, f) for m in members]) for f in ("fc1", "fc2", "fc3"))
        self.relu = nn.ReLU()
        self.p = [dropout_p(m) for m in members]
        self.generators: list[torch.Generator] = []
        self._scales: dict = {}

    def features(self) -> tuple[int, int]:
        """The widths of the two layers dropout follows (fc1's and fc2's outputs)."""
        return self.fc1.weight.shape[1], self.fc2.weight.shape[1]

    def epoch_masks(self, rows: int, device: torch.device) -> torch.Tensor | None:
        """Every dropout mask of an epoch of `rows` training images, K × rows·(f1 + f2) booleans (True:
        kept), or None when no member drops. Member k's row is drawn in one call from `generators[k]`:
        on a CPU one draw of many elements gives the bits that the separate run's draws of a step's
        fc1 mask, then its fc2 mask, step after step, give (tests/training/test_fused.py), so a member keeps its
        separate run's masks while the step itself draws nothing. A member with p = 0 keeps everything."""
        if not any(self.p):
            return None
        f1, f2 = self.features()
        out = torch.ones(self.k, rows * (f1 + f2), dtype=torch.bool, device=device)
        for k, p in enumerate(self.p):
            if p > 0:
                out[k].bernoulli_(1 - p, generator=self.generators[k])
        return out

    def step_masks(self, masks: torch.Tensor | None, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The fc1 and fc2 masks (K × B × f, views of `masks`) of the step over images lo:hi of the epoch."""
        if masks is None:
            return None
        f1, f2 = self.features()
        start, b = lo * (f1 + f2), hi - lo
        return (
            masks[:, start : start + b * f1].view(self.k, b, f1),
            masks[:, start + b * f1 : start + b * (f1 + f2)].view(self.k, b, f2),
        )

    def _scale(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """1 / (1 - p) per member (1 where p = 0) in `dtype`, computed as torch's dropout computes its
        scale (ones divided by 1 - p), so a kept activation gets its separate run's bits."""
        key = (dtype, device)
        if key not in self._scales:
            self._scales[key] = torch.stack(
                [torch.ones((), dtype=dtype, device=device).div_(1 - p) for p in self.p]
            ).view(self.k, 1, 1)
        return self._scales[key]

    def drop(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Each member's inverted dropout with its mask of this step (K × B × f booleans)."""
        if not self.training or mask is None:
            return x
        return x * mask * self._scale(x.dtype, x.device)

    def forward(self, x: torch.Tensor, masks: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        x = self.pool(self.relu(self.bn1(self.conv1(x))))
        x = self.pool(self.relu(self.bn2(self.conv2(x))))
        x = x.reshape(x.shape[0], self.k, -1).transpose(0, 1)  # K × B × features, each member's in its LeNet order
        first, second = masks if masks is not None else (None, None)
        x = self.drop(self.relu(self.fc1(x)), first)
        x = self.drop(self.relu(self.fc2(x)), second)
        return self.fc3(x)

    def member_state(self, k: int) -> dict[str, torch.Tensor]:
        """Member k's weights (and BatchNorm statistics) under its LeNet's names, copied to the CPU."""
        out = {}
        for name, value in self.state_dict().items():
            layer, field = name.rsplit(".", 1)
            if field == "num_batches_tracked":
                part = value
            elif layer.startswith("fc"):
                part = value[k, 0] if field == "bias" else value[k]
            else:
                rows = value.shape[0] // self.k
                part = value[k * rows : (k + 1) * rows]
            out[name] = part.detach().to("cpu", copy=True).contiguous()
        return out

    def member_rows(self, p: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """`values` (one per member) broadcast over a stacked parameter's elements."""
        if p.shape[0] == self.k and p.dim() == 3:  # a StackedLinear weight or bias
            return values.view(self.k, 1, 1)
        return values.repeat_interleave(p.shape[0] // self.k).view(-1, *[1] * (p.dim() - 1))


def fused_input(batches: torch.Tensor, fmt: torch.memory_format) -> torch.Tensor:
    """Member batches stacked K × B × C × H × W as one float B × (K·C) × H × W batch in `fmt`
    (member k's channels in block k): one copy that converts and lays out, then one division: the
    values torchvision's ToTensor() gives (engine.to_float)."""
    k, b, c, h, w = batches.shape
    out = torch.empty((b, k * c, h, w), dtype=torch.float32, device=batches.device, memory_format=fmt)
    out.view(b, k, c, h, w).copy_(batches.transpose(0, 1))
    return out.div_(255)
