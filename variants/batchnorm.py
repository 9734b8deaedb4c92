from variants.lenet import LeNet
from variants.registry import register


@register("batchnorm", hypothesis="BatchNorm after each convolution speeds up training and raises held-out accuracy.")
def batchnorm():
    return LeNet(batchnorm=True)
