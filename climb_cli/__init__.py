"""climb: acquire, verify and preprocess the CLIMB clinical corpus."""

__version__ = "0.1.0"
