"""Random crop and horizontal flip of each training image, done on the whole batch where it lives
(CPU or GPU, uint8 or float), with the run's own generator: no DataLoader, no PIL."""
import torch
from torch.nn import functional as F

from variants.registry import Change, register

PAD = 4  # zero padding on every side, as torchvision's RandomCrop(32, padding=4)


def crop_and_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image of the N×C×H×W batch `x`: padded with PAD zero pixels on every side, cut back to
    H×W at a random offset, and mirrored left-right with probability 0.5. The draws come from
    `generator` (on the CPU), so the same generator state gives the same batch on any device.

    One gather does it: the pixels of the padded images, in channels-last order (the layout the
    harness keeps images in), are picked by a per-image index of source positions. A uint8 image
    of up to 4 channels is gathered one 32-bit word per pixel, and the batch comes back dense in
    channels-last order, as the model's CPU layout wants it (`python -m harness bench` measures
    what augmenting costs)."""
    n, c, h, w = x.shape
    dy = torch.randint(0, 2 * PAD + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * PAD + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    width = w + 2 * PAD
    rows = dy[:, None] + torch.arange(h)  # n×h rows of the padded image
    cols = dx[:, None] + torch.arange(w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)  # n×w, reversed where flipped
    index = (rows[:, :, None] * width + cols[:, None, :]).reshape(n, h * w).to(x.device)
    nhwc = x.permute(0, 2, 3, 1)
    if x.dtype == torch.uint8 and c <= 4:  # one word per pixel: pad the channels to 4 bytes
        words = F.pad(nhwc, (0, 4 - c, PAD, PAD, PAD, PAD)).contiguous().view(torch.int32).reshape(n, -1)
        out = words.gather(1, index).view(torch.uint8).reshape(n, h, w, 4)[..., :c].contiguous()  # dense channels-last
    else:
        padded = F.pad(nhwc, (0, 0, PAD, PAD, PAD, PAD)).reshape(n, -1, c)
        out = padded.gather(1, index[:, :, None].expand(n, h * w, c)).reshape(n, h, w, c)
    return out.permute(0, 3, 1, 2)


@register("augment", hypothesis="Random crops (4-pixel zero padding) and horizontal flips of training images reduce overfitting.")
def augment():
    return Change(transform=crop_and_flip)
