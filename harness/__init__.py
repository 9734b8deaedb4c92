"""harness: one command for a CNN ablation study on CIFAR-10 (see README.md)."""

__version__ = "0.1.0"
