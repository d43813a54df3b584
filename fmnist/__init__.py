"""fmnist: a from-scratch MLP trainer for Fashion-MNIST and MNIST on NumPy (CPU) or CuPy (GPU)."""

__version__ = "0.1.0"
