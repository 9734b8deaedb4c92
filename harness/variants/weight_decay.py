from harness.variants.registry import Change, register


# Weight decay is a training setting, not a model change: the network is the baseline's.
@register(
    "weight_decay",
    hypothesis="An L2 penalty (weight decay in the optimizer) shrinks weights and narrows the train-validation gap.",
    train={"weight_decay": 5e-4},
)
def weight_decay():
    return Change()
