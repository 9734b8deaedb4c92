from variants.lenet import LeNet
from variants.registry import register


# Weight decay is a training setting, not a model change: the network is the baseline's.
@register(
    "weight_decay",
    hypothesis="An L2 penalty (Adam weight decay) shrinks weights and narrows the train-validation gap.",
    train={"weight_decay": 5e-4},
)
def weight_decay(image_shape, num_classes):
    return LeNet(image_shape, num_classes)
