"""The fused network: K members of the LeNet family (variants/lenet.py: conv1, bn1, pool, conv2,
bn2, fc1, fc2, fc3, relu, drop) as one network. Member k's image channels are block k of the
input's channels; the convolutions are grouped convolutions, BatchNorm runs over K×C channels (each
member its own batch statistics and running stats), the linear layers are batched matmuls over a
leading member axis, and dropout draws each member's masks from its own generator."""
from __future__ import annotations

import torch
from torch import nn

from harness.training import engine


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

    def drop(self, x: torch.Tensor) -> torch.Tensor:
        """Each member's inverted dropout, its mask drawn as torch's CPU dropout draws it (a
        Bernoulli(1 - p) tensor of the member's activations' shape, divided by 1 - p)."""
        if not self.training or not any(self.p):
            return x
        masks = []
        for k, p in enumerate(self.p):
            if p > 0:
                masks.append(torch.empty(x.shape[1:], device=x.device, dtype=x.dtype).bernoulli_(1 - p, generator=self.generators[k]).div_(1 - p))
            else:
                masks.append(torch.ones(x.shape[1:], device=x.device, dtype=x.dtype))
        return x * torch.stack(masks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.bn1(self.conv1(x))))
        x = self.pool(self.relu(self.bn2(self.conv2(x))))
        x = x.reshape(x.shape[0], self.k, -1).transpose(0, 1)  # K × B × features, each member's in its LeNet order
        x = self.drop(self.relu(self.fc1(x)))
        x = self.drop(self.relu(self.fc2(x)))
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
                part = value[k * rows:(k + 1) * rows]
            out[name] = part.detach().to("cpu", copy=True).contiguous()
        return out

    def member_rows(self, p: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """`values` (one per member) broadcast over a stacked parameter's elements."""
        if p.shape[0] == self.k and p.dim() == 3:  # a StackedLinear weight or bias
            return values.view(self.k, 1, 1)
        return values.repeat_interleave(p.shape[0] // self.k).view(-1, *[1] * (p.dim() - 1))


def fused_input(batches: list[torch.Tensor], fmt: torch.memory_format) -> torch.Tensor:
    """Member batches (each B × C × H × W, uint8 or float) as one float B × (K·C) × H × W batch."""
    return engine.to_float(torch.cat(batches, 1)).contiguous(memory_format=fmt)
