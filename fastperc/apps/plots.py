"""PNG figures without a plotting library (pillow only): training curves and confusion matrices."""
from __future__ import annotations

from PIL import Image, ImageDraw

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75)]


def line_plot(series: dict, path: str, title: str = "", size=(640, 400), y_range=None) -> None:
    """One polyline per name over epochs 1..n (values may be None where not measured), with a legend."""
    width, height = size
    left, right, top, bottom = 60, 20, 30, 40
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    values = [v for vs in series.values() for v in vs if v is not None]
    lo, hi = y_range if y_range else (min(values, default=0.0), max(values, default=1.0))
    hi = hi if hi > lo else lo + 1.0
    n = max((len(vs) for vs in series.values()), default=1)

    def at(i, v):
        x = left + (width - left - right) * (i / max(n - 1, 1))
        return x, top + (height - top - bottom) * (1 - (v - lo) / (hi - lo))

    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    for frac in (0.0, 0.5, 1.0):
        value = lo + frac * (hi - lo)
        _, y = at(0, value)
        draw.text((4, y - 6), f"{value:.3g}", fill="black")
    draw.text((left, height - bottom + 8), "epoch 1", fill="black")
    draw.text((width - right - 60, height - bottom + 8), f"epoch {n}", fill="black")
    draw.text((left, 8), title, fill="black")
    for k, (name, vs) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        points = [at(i, v) for i, v in enumerate(vs) if v is not None]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for x, y in points:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        draw.text((width - right - 150, top + 6 + 14 * k), name, fill=colour)
    image.save(path)


def confusion_matrix_png(matrix, labels, path: str, cell: int = 36) -> None:
    """matrix[true][predicted] counts as a grey-scale grid, rows normalised, counts written in."""
    n = len(labels)
    margin = 110
    image = Image.new("RGB", (margin + n * cell + 10, margin + n * cell + 10), "white")
    draw = ImageDraw.Draw(image)
    for i in range(n):
        total = max(sum(matrix[i]), 1)
        draw.text((4, margin + i * cell + cell // 3), str(labels[i])[:16], fill="black")
        draw.text((margin + i * cell + 2, margin - 14 - 12 * (i % 2)), str(labels[i])[:6], fill="black")
        for j in range(n):
            shade = int(255 * (1 - matrix[i][j] / total))
            box = [margin + j * cell, margin + i * cell, margin + (j + 1) * cell - 1, margin + (i + 1) * cell - 1]
            draw.rectangle(box, fill=(shade, shade, shade), outline=(200, 200, 200))
            if matrix[i][j]:
                draw.text((box[0] + 4, box[1] + cell // 3), str(matrix[i][j]), fill="red" if shade < 128 else "black")
    draw.text((4, 4), "rows: true class, columns: predicted", fill="black")
    image.save(path)
