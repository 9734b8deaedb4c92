"""Data: the named datasets (CIFAR-10, CIFAR-100, digits; `register_dataset` adds one), their
npz files checked and hashed, the seeded hold-out split and its fingerprint, and tensors on the
device. May import: base."""
