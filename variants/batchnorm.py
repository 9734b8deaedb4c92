from variants.lenet import LeNet
from variants.registry import register


@register("batchnorm", hypothesis="BatchNorm after each convolution speeds up training and raises held-out accuracy.")
def batchnorm(image_shape, num_classes):
    return LeNet(image_shape, num_classes, batchnorm=True)
