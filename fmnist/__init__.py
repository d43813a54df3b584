"""fmnist: from-scratch MLPs and CNNs for Fashion-MNIST and MNIST, every gradient written by hand, on NumPy (CPU)
or CuPy (GPU)."""

__version__ = "0.1.0"
