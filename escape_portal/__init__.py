"""ESCAPE Portal: the researcher's door to the ESCAPE data lake from Jupyter."""

__version__ = "0.1.0"
