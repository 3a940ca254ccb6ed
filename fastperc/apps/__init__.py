"""The applications behind the console script: texture synthesis, style transfer, image comparison."""
