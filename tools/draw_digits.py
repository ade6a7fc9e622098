"""Draw the course's own digit images (images/digits/<digit>/<digit>.png): synthetic, made to look like phone photos.

    python tools/draw_digits.py        # rewrites the ten PNG files

Notebook 05 (section 6) reads them as a student's own photos would be read: colour, dark ink on light
paper, larger than 28x28, the digit off-centre. They are drawn, not photographed or downloaded: each
digit is a few strokes (polylines and arcs in a 100x100 box) drawn with a round pen; a fixed seed adds
a little wobble, tilt, uneven paper and noise, so the files are the same on every run.
"""

import math
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
SIZE = 160
PAPER, INK = (232, 226, 212), (28, 36, 82)


def arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, steps: int = 24) -> list:
    """Points on an ellipse from angle `start` to `end` (degrees; 0 = right, 90 = down)."""
    return [(cx + rx * math.cos(math.radians(start + (end - start) * i / steps)),
             cy + ry * math.sin(math.radians(start + (end - start) * i / steps))) for i in range(steps + 1)]


# Strokes per digit, in a 100x100 box (x right, y down).
STROKES = {
    0: [arc(50, 50, 26, 38, -80, 285)],
    1: [[(38, 26), (54, 12), (54, 88)]],
    2: [arc(50, 32, 24, 20, 200, 360) + [(70, 44), (28, 88), (76, 88)]],
    3: [arc(48, 30, 24, 18, 200, 440) + arc(48, 67, 27, 21, -90, 150)],
    4: [[(58, 12), (24, 64), (78, 64)], [(62, 36), (62, 90)]],
    5: [[(72, 14), (34, 14), (30, 46)] + arc(48, 64, 26, 24, -120, 150)],
    6: [[(64, 12)] + arc(50, 64, 24, 24, 200, 560)],
    7: [[(24, 16), (76, 16), (42, 90)], [(36, 52), (66, 52)]],
    8: [arc(50, 30, 20, 18, 90, 450), arc(50, 68, 25, 21, -90, 270)],
    9: [arc(50, 34, 22, 20, 0, 370), [(72, 36), (66, 90)]],
}


def draw(digit: int, rng: random.Random) -> Image.Image:
    """One digit as a photo of pen on paper."""
    paper = Image.new("RGB", (SIZE, SIZE), PAPER)
    shade = Image.linear_gradient("L").resize((SIZE, SIZE)).rotate(90 * rng.randrange(4))  # light from one side
    paper = Image.composite(Image.new("RGB", (SIZE, SIZE), (205, 198, 182)), paper, shade.point(lambda v: v // 3))
    ink = Image.new("L", (SIZE, SIZE), 0)
    pen = ImageDraw.Draw(ink)
    scale, dx, dy = rng.uniform(0.9, 1.1), rng.uniform(20, 45), rng.uniform(15, 40)
    width = rng.randint(8, 11)
    for stroke in STROKES[digit]:
        points = [(dx + scale * x + rng.uniform(-1.2, 1.2), dy + scale * y + rng.uniform(-1.2, 1.2)) for x, y in stroke]
        pen.line(points, fill=255, width=width, joint="curve")
        for x, y in (points[0], points[-1]):  # round pen ends
            pen.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=255)
    ink = ink.rotate(rng.uniform(-8, 8), resample=Image.BICUBIC).filter(ImageFilter.GaussianBlur(1.2))
    photo = Image.composite(Image.new("RGB", (SIZE, SIZE), INK), paper, ink)
    noise = Image.effect_noise((SIZE, SIZE), 12).convert("RGB")
    return Image.blend(photo, noise, 0.06)


def main() -> None:
    """Write images/digits/<d>/<d>.png for d = 0..9."""
    rng = random.Random(2026)
    for digit in range(10):
        folder = ROOT / "images" / "digits" / str(digit)
        folder.mkdir(parents=True, exist_ok=True)
        draw(digit, rng).save(folder / f"{digit}.png", optimize=True)
    print(f"wrote 10 images to {ROOT / 'images' / 'digits'}")


if __name__ == "__main__":
    main()
