"""cfer: continual few-shot compound facial expression recognition."""

__version__ = "0.1.0"
