"""Writes the README's example texture (coloured, outlined discs on paper), so that the README figure
needs no third-party image.

    python docs/make_example_style.py docs/discs.png
"""
import sys

from fastperc.apps.patterns import discs
from fastperc.image import write_image

if __name__ == "__main__":
    write_image(discs(), sys.argv[1] if len(sys.argv) > 1 else "discs.png")
