#!/usr/bin/python3
"""image_golden.py — reference outputs of BAGEL's image transforms, made with Pillow.

Writes, under tests/data/image/:
  inputs/      the test images: copies of a few bagel-synth images (given with
               --synth DIR) and images made here with Pillow (RGBA, palette with
               transparency, grey, grey+alpha, EXIF orientation 6, animated GIF,
               WebP, TIFF, CMYK, 16-bit grey, 2048x1536 JPEG, 1200x900 PNG)
  expected.tsv name, output (vit|vae), width, height, fidelity (psnr|size)
  ref/NAME.OUT.rgb.xz  Pillow's (H, W, 3) u8 result: raw bytes, xz (delta 3, LZMA2)
  sizes.tsv    W H img_num vit_w vit_h vae_w vae_h by the reference formula, at
               boundary sizes (round-half-to-even cases among them)

The transform is BAGEL's (data/transforms.py, data/data_utils.py), as
bagel-reference.md §3.9 gives it: ImageOps.exif_transpose (the issue's rule;
BAGEL itself does not apply it), pil_img2rgb (alpha over white; other modes
convert("RGB")), MaxLongEdgeMinShortEdgeResize, Image.resize(BICUBIC) as
torchvision's F.resize does on a PIL image. Run with Debian's python3-pil:
  /usr/bin/python3 tests/reference/image_golden.py --synth DIR
"""
import argparse, lzma, math, os, random, shutil, sys
from PIL import Image, ImageDraw, ImageOps

VIT = (980, 378, 14, 2007040)
# byte deltas per pixel, then LZMA2: Python's lzma module reads it (CI has no Pillow)
XZ = [{"id": lzma.FILTER_DELTA, "dist": 3}, {"id": lzma.FILTER_LZMA2, "preset": 9}]
VAE = (1024, 512, 16, 1806336)


def make_divisible(v, s):
    return max(s, int(round(v / s) * s))


def apply_scale(w, h, scale, s):
    return make_divisible(round(w * scale), s), make_divisible(round(h * scale), s)


def target(rule, w, h, img_num=1):
    mx, mn, s, maxpix = rule
    scale = min(mx / max(w, h), 1.0)
    scale = max(scale, mn / min(w, h))
    nw, nh = apply_scale(w, h, scale, s)
    if nw * nh > maxpix / img_num:
        scale = maxpix / img_num / (nw * nh)
        nw, nh = apply_scale(nw, nh, scale, s)
    if max(nw, nh) > mx:
        scale = mx / max(nw, nh)
        nw, nh = apply_scale(nw, nh, scale, s)
    return nw, nh


def pil_img2rgb(image):
    if image.mode == "RGBA" or image.info.get("transparency", None) is not None:
        image = image.convert("RGBA")
        white = Image.new(mode="RGB", size=image.size, color=(255, 255, 255))
        white.paste(image, mask=image.split()[3])
        return white
    return image.convert("RGB")


def scene(w, h, seed, mode="RGB"):
    """Smooth gradients, hard-edged shapes and thin lines: edges exercise the filter, and the
    committed references stay small."""
    rnd = random.Random(seed)
    im = Image.linear_gradient("L").resize((w, h)).convert("RGB")
    r = Image.radial_gradient("L").resize((w, h))
    im = Image.merge("RGB", (im.split()[0], r, ImageOps.invert(im.split()[0])))
    d = ImageDraw.Draw(im)
    for _ in range(12):
        x0, y0 = rnd.randrange(w), rnd.randrange(h)
        x1, y1 = x0 + rnd.randrange(w // 3 + 1), y0 + rnd.randrange(h // 3 + 1)
        c = tuple(rnd.randrange(256) for _ in range(3))
        (d.ellipse if rnd.random() < 0.5 else d.rectangle)((x0, y0, x1, y1), fill=c)
    for _ in range(6):
        d.line([(rnd.randrange(w), rnd.randrange(h)) for _ in range(2)], fill=(0, 0, 0), width=3)
    return im


def made_inputs(d):
    out = {}
    def save(name, im, **kw):
        im.save(os.path.join(d, name), **kw)
        out[name] = "psnr"
    save("photo-2048x1536.jpg", scene(2048, 1536, 2), quality=85)
    save("photo-1200x900.png", scene(1200, 900, 3), optimize=True)
    save("tall-600x1400.jpg", scene(600, 1400, 4), quality=90)
    save("small-200x120.png", scene(200, 120, 5))
    a = scene(700, 500, 6).convert("RGBA")
    a.putalpha(Image.linear_gradient("L").resize((700, 500)))
    save("rgba-700x500.png", a)
    p = scene(400, 300, 7).convert("P", palette=Image.ADAPTIVE, colors=64)
    save("palette-trns-400x300.png", p, transparency=0)
    save("palette-400x300.gif", p, transparency=0)
    save("grey-900x1300.jpg", scene(900, 1300, 8).convert("L"), quality=90)
    la = scene(500, 400, 9).convert("LA")
    la.putalpha(Image.radial_gradient("L").resize((500, 400)))
    save("grey-alpha-500x400.png", la)
    e = scene(800, 600, 10)
    ex = Image.Exif()
    ex[0x0112] = 6
    save("exif-rot6-800x600.jpg", e, quality=90, exif=ex.tobytes())
    f1, f2 = scene(320, 240, 11), scene(320, 240, 12)
    f1.save(os.path.join(d, "anim-320x240.gif"), save_all=True, append_images=[f2], duration=100, loop=0)
    out["anim-320x240.gif"] = "psnr"
    save("lossy-1000x700.webp", scene(1000, 700, 13), quality=90)
    save("rgb-640x480.tif", scene(640, 480, 14), compression="tiff_deflate")
    # colour models Pillow handles without colour management: sizes only
    save("cmyk-640x480.jpg", scene(640, 480, 15).convert("CMYK"), quality=90)
    save("grey16-300x200.png", scene(300, 200, 16).convert("I").point(lambda v: v * 256).convert("I;16"))
    out["cmyk-640x480.jpg"] = out["grey16-300x200.png"] = "size"
    return out


def boundary_sizes():
    """Sizes where an intermediate value of the rule is exactly k + 0.5, plus edges."""
    found = []
    for rule in (VIT, VAE):
        mx, mn, s, _ = rule
        for w in range(1, 2100):
            h = (w * 3) // 4 or 1
            for (W, H) in ((w, h), (h, w), (w, w)):
                scale = max(min(mx / max(W, H), 1.0), mn / min(W, H))
                for v in (W * scale, H * scale, round(W * scale) / s, round(H * scale) / s):
                    if abs(v - math.floor(v) - 0.5) < 1e-12:
                        found.append((W, H))
    rnd = random.Random(5)
    half = sorted(set(found))
    picked = rnd.sample(half, min(40, len(half)))
    edges = [(1, 1), (1, 4000), (4000, 1), (7, 7), (14, 14), (16, 16), (377, 378), (378, 378), (512, 512),
             (979, 980), (980, 980), (1024, 1024), (1025, 1024), (1421, 1421), (1500, 1343), (1343, 1500),
             (2000, 1000), (3000, 200), (200, 3000), (1344, 1344), (1345, 1345)]
    return sorted(set(picked + edges))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--synth", required=True, help="a bagel-synth --seed 1 output directory")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "data", "image"))
    a = ap.parse_args()
    inp, ref = os.path.join(a.out, "inputs"), os.path.join(a.out, "ref")
    shutil.rmtree(inp, ignore_errors=True)
    shutil.rmtree(ref, ignore_errors=True)
    os.makedirs(inp)
    os.makedirs(ref)
    kinds = made_inputs(inp)
    syn = sorted(os.listdir(os.path.join(a.synth, "images")))
    for n in [x for x in syn if x.endswith(".png")][:6] + [x for x in syn if x.endswith(".jpg")][:6]:
        shutil.copy(os.path.join(a.synth, "images", n), os.path.join(inp, "synth-" + n))
        kinds["synth-" + n] = "psnr"
    rows = []
    for name in sorted(kinds):
        im = Image.open(os.path.join(inp, name))
        im = ImageOps.exif_transpose(im)
        im = pil_img2rgb(im)
        for out, rule in (("vit", VIT), ("vae", VAE)):
            w, h = target(rule, *im.size)
            r = im.resize((w, h), Image.BICUBIC)
            assert r.mode == "RGB"
            if kinds[name] == "psnr":
                with open(os.path.join(ref, f"{name}.{out}.rgb.xz"), "wb") as g:
                    g.write(lzma.compress(r.tobytes(), format=lzma.FORMAT_XZ, filters=XZ))
            rows.append(f"{name}\t{out}\t{w}\t{h}\t{kinds[name]}")
    with open(os.path.join(a.out, "expected.tsv"), "w") as f:
        f.write("# name\toutput\twidth\theight\tfidelity  (made by tests/reference/image_golden.py, Pillow %s)\n"
                % Image.__version__)
        f.write("\n".join(rows) + "\n")
    with open(os.path.join(a.out, "sizes.tsv"), "w") as f:
        f.write("# W\tH\timg_num\tvit_w\tvit_h\tvae_w\tvae_h  (the reference formula, Python round)\n")
        for (w, h) in boundary_sizes():
            for n in (1, 3):
                f.write("%d\t%d\t%d\t%d\t%d\t%d\t%d\n" % ((w, h, n) + target(VIT, w, h, n) + target(VAE, w, h, 1)))


if __name__ == "__main__":
    main()
