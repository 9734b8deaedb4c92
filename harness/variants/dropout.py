from harness.variants.registry import Change, register


@register(
    "dropout", hypothesis="Dropout after the hidden linear layers reduces overfitting and raises held-out accuracy."
)
def dropout(p: float = 0.5):
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {p}")
    return Change(model={"dropout": p})
