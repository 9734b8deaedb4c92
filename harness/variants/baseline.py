from harness.variants.registry import Change, register


@register("baseline", hypothesis="The tutorial's LeNet as published: the reference every variant is compared with.")
def baseline():
    return Change()
