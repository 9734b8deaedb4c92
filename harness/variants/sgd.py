import torch

from harness.variants.registry import Change, register


def nesterov_sgd(parameters, settings) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum 0.9, at the run's learning rate and weight decay."""
    return torch.optim.SGD(parameters, lr=settings.lr, momentum=0.9, nesterov=True, weight_decay=settings.weight_decay)


# SGD needs a larger step than Adam's 1e-3: 0.05 is its own default (`--set params.sgd.lr=...`).
@register(
    "sgd",
    hypothesis="SGD with Nesterov momentum instead of Adam generalises better at a comparable cost.",
    train={"lr": 0.05},
)
def sgd():
    return Change(optimizer=nesterov_sgd)
