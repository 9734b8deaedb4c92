from harness.variants.registry import Change, register


@register("batchnorm", hypothesis="BatchNorm after each convolution speeds up training and raises held-out accuracy.")
def batchnorm():
    return Change(model={"batchnorm": True})
