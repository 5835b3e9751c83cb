"""ddpm: denoising diffusion probabilistic models (Ho et al. 2020) in PyTorch."""

__version__ = "0.1.0"
