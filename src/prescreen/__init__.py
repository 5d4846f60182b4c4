"""prescreen: screen uploads against shared hash banks and classifiers before they go live."""

__version__ = "0.1.0"
