"""Functional API: losses and ops on tensors."""
from fastperc.functional.gram import gram_matrix, style_loss

__all__ = ["gram_matrix", "style_loss"]
