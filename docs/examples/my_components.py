from torch import nn

from harness import Change, register


class WideNet(nn.Module):
    """LeNet's shape with `hidden` units in its first hidden layer."""

    def __init__(self, image_shape, num_classes, hidden=240):
        super().__init__()
        c, h, w = image_shape
        self.features = nn.Sequential(
            nn.Conv2d(c, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2)
        )

        def side(n):  # two 5×5 convolutions, each followed by a 2×2 pooling
            return ((n - 4) // 2 - 4) // 2

        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * side(h) * side(w), hidden),
            nn.ReLU(),
            nn.Linear(hidden, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x):
        return self.head(self.features(x))


@register("wide", hypothesis="Twice the hidden units raise accuracy without more overfitting.")
def wide(hidden: int = 240):
    return Change(architecture=WideNet, model={"hidden": hidden})
