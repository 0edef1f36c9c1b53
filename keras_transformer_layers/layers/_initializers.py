"""Private helper shared by the layers that create several weighted sublayers."""


def clone_initializer(initializer):
    """A fresh copy, so that seeded initializers give each sublayer its own values."""
    return initializer.__class__.from_config(initializer.get_config())
