"""mambacsr: compressed-image super-resolution with Mamba state-space models (MambaCSR and its baselines)."""

__version__ = "0.1.0"
