from variants.lenet import LeNet
from variants.registry import register


@register("baseline", hypothesis="The tutorial's LeNet as published: the reference every variant is compared with.")
def baseline(image_shape, num_classes):
    return LeNet(image_shape, num_classes)
