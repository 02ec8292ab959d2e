"""musicdet: frame-level music detection for broadcast audio (Gimeno et al., Interspeech 2020)."""

__version__ = "0.1.0"
