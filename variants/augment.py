"""Random crop and horizontal flip of each training image, done on the whole batch where it lives
(CPU or GPU, uint8 or float), with the run's own generator: no DataLoader, no PIL."""
import torch
from torch.nn import functional as F

from variants.registry import Change, register

PAD = 4  # zero padding on every side, as torchvision's RandomCrop(32, padding=4)


def crop_and_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image of the N×C×H×W batch `x`: padded with PAD zero pixels on every side, cut back to
    H×W at a random offset, and mirrored left-right with probability 0.5. The draws come from
    `generator` (on the CPU), so the same generator state gives the same batch on any device."""
    n, c, h, w = x.shape
    dy = torch.randint(0, 2 * PAD + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * PAD + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    rows = (dy[:, None] + torch.arange(h)).to(x.device)  # n×h rows of the padded image
    cols = dx[:, None] + torch.arange(w)
    cols = torch.where(flip[:, None], cols.flip(1), cols).to(x.device)  # n×w, reversed where flipped
    padded = F.pad(x, (PAD, PAD, PAD, PAD))
    index = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[index, channel, rows[:, None, :, None], cols[:, None, None, :]]


@register("augment", hypothesis="Random crops (4-pixel zero padding) and horizontal flips of training images reduce overfitting.")
def augment():
    return Change(transform=crop_and_flip)
