"""hybrid: neuroevolution plus gradient descent over graph genomes."""

__version__ = "0.1.0"

__all__ = ["__version__"]
