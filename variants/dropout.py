from variants.lenet import LeNet
from variants.registry import register


@register("dropout", hypothesis="Dropout after the hidden linear layers reduces overfitting and raises held-out accuracy.")
def dropout(image_shape, num_classes, p: float = 0.5):
    return LeNet(image_shape, num_classes, dropout=p)
