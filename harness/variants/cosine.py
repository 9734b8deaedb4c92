import torch

from harness.variants.registry import Change, register


def cosine_to_zero(optimizer, settings):
    """Cosine annealing from the run's learning rate to 0 over its epochs (stepped after each epoch)."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs, eta_min=0.0)


@register(
    "cosine", hypothesis="Annealing the learning rate to 0 on a cosine over the run settles into a better minimum."
)
def cosine():
    return Change(schedule=cosine_to_zero)
