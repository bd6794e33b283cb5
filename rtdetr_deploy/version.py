"""The package version, importable by every layer (the package's ``__init__`` reaches into the models)."""

__version__ = "0.1.0"
