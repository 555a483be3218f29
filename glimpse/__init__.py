"""glimpse: export, quantize and serve attention-based vision-language models."""

from glimpse.errors import GlimpseError

__version__ = "0.1.0"
__all__ = ["GlimpseError", "__version__"]
