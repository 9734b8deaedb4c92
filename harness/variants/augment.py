"""Random crop and horizontal flip of each training image, done on the whole batch where it lives
(CPU or GPU, uint8 or float), with the run's own generator: no DataLoader, no PIL."""

import torch
from torch.nn import functional as F

from harness.variants.registry import Change, register

PAD = 4  # zero padding on every side, as torchvision's RandomCrop(32, padding=4)


def draw(n: int, generator: torch.Generator) -> torch.Tensor:
    """The random part of `crop_and_flip` for n images, n × 3 (row offset, column offset, flipped),
    drawn from `generator` on the CPU in the order the transform has always drawn them."""
    dy = torch.randint(0, 2 * PAD + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * PAD + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    return torch.stack([dy, dx, flip.long()], 1)


def apply(x: torch.Tensor, drawn: torch.Tensor) -> torch.Tensor:
    """`crop_and_flip` of the N×C×H×W batch `x` with its draws (N × 3, on x's device): the index of
    source pixels is built where the images live, so a GPU step copies 3 numbers per image, not
    the index.

    One gather does it: the pixels of the padded images, in channels-last order (the layout the
    harness keeps images in), are picked by a per-image index of source positions. A uint8 image
    of up to 4 channels is gathered one 32-bit word per pixel, and the batch comes back dense in
    channels-last order, as the model's CPU layout wants it (`python -m harness bench` measures
    what augmenting costs)."""
    n, c, h, w = x.shape
    dy, dx, flip = drawn[:, 0:1], drawn[:, 1:2], drawn[:, 2:3].bool()
    width = w + 2 * PAD
    rows = dy + torch.arange(h, device=x.device)  # n×h rows of the padded image
    cols = dx + torch.arange(w, device=x.device)
    cols = torch.where(flip, cols.flip(1), cols)  # n×w, reversed where flipped
    index = (rows[:, :, None] * width + cols[:, None, :]).reshape(n, h * w)
    nhwc = x.permute(0, 2, 3, 1)
    if x.dtype == torch.uint8 and c <= 4:  # one word per pixel: pad the channels to 4 bytes
        words = F.pad(nhwc, (0, 4 - c, PAD, PAD, PAD, PAD)).contiguous().view(torch.int32).reshape(n, -1)
        out = words.gather(1, index).view(torch.uint8).reshape(n, h, w, 4)[..., :c].contiguous()  # dense channels-last
    else:
        padded = F.pad(nhwc, (0, 0, PAD, PAD, PAD, PAD)).reshape(n, -1, c)
        out = padded.gather(1, index[:, :, None].expand(n, h * w, c)).reshape(n, h, w, c)
    return out.permute(0, 3, 1, 2)


def crop_and_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image of the N×C×H×W batch `x`: padded with PAD zero pixels on every side, cut back to
    H×W at a random offset, and mirrored left-right with probability 0.5. The draws come from
    `generator` (on the CPU), so the same generator state gives the same batch on any device. A
    fused group (harness/training/fused.py) draws each member's part with `draw` and applies them
    all at once with `apply`."""
    return apply(x, draw(len(x), generator).to(x.device, non_blocking=True))


crop_and_flip.draw = draw
crop_and_flip.apply = apply


@register(
    "augment",
    hypothesis="Random crops (4-pixel zero padding) and horizontal flips of training images reduce overfitting.",
)
def augment():
    return Change(transform=crop_and_flip)
