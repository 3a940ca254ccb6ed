"""Loss modules and layers."""
from fastperc.nn.style import StyleLoss

__all__ = ["StyleLoss"]
