import numpy as np

from harness import Dataset, register_dataset


def make_stripes(directory):
    """Two classes of 16×16 grey images: horizontal or vertical stripes, with noise."""
    rng = np.random.default_rng(0)

    def images(n):
        y = rng.integers(0, 2, n).astype(np.uint8)
        stripes = (np.arange(16) % 4 < 2) * 200
        x = np.where(y[:, None, None] == 0, stripes[None, :, None], stripes[None, None, :]) + rng.integers(
            0, 55, (n, 16, 16)
        )
        return x.astype(np.uint8)[..., None], y

    (x_train, y_train), (x_test, y_test) = images(400), images(100)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


register_dataset(
    Dataset(
        "stripes",
        ("horizontal", "vertical"),
        (1, 16, 16),
        "stripes.npz",
        make_stripes,
        "synthetic stripes, made on first use",
    )
)
