#!/usr/bin/env python3
"""image_check.py — compare bagel-image's records with the Pillow references.

  image_check.py RECORDS DATA_DIR [--min-psnr 35] [--report] [--alias NAME=REF]...
  image_check.py RECORDS --pillow ROOT [--min-psnr 35] [--report]

RECORDS is a bagel-image output (msgpack records, read here with a minimal
decoder: Python's standard library only, as in CI). For every image segment,
its vit/vae shape must equal DATA_DIR/expected.tsv, and where the fidelity
column says psnr, the PSNR against DATA_DIR/ref/NAME.OUT.rgb.xz must reach
--min-psnr. Prints one line per output with --report, then a summary line;
exits 1 on any failure. --alias NAME=REF checks the image NAME against
REF's expected size and reference (a file re-encoded from REF: WebP, AVIF).

With --pillow, the references are made here, with Pillow (BAGEL's transforms:
exif_transpose, pil_img2rgb, MaxLongEdgeMinShortEdgeResize, BICUBIC), for
each image under ROOT; exits 77 when Pillow is not installed."""
import lzma, math, os, struct, sys


def unpack(b, i):
    t = b[i]
    i += 1
    if t <= 0x7F: return t, i
    if 0x80 <= t <= 0x8F: return _map(b, i, t & 15)
    if 0x90 <= t <= 0x9F: return _arr(b, i, t & 15)
    if 0xA0 <= t <= 0xBF:
        n = t & 31
        return b[i:i + n].decode(), i + n
    if t >= 0xE0: return t - 256, i
    if t == 0xC0: return None, i
    if t == 0xC2: return False, i
    if t == 0xC3: return True, i
    fixed = {0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q", 0xD0: ">b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q",
             0xCA: ">f", 0xCB: ">d"}
    if t in fixed:
        f = fixed[t]
        return struct.unpack_from(f, b, i)[0], i + struct.calcsize(f)
    lens = {0xC4: ">B", 0xC5: ">H", 0xC6: ">I", 0xD9: ">B", 0xDA: ">H", 0xDB: ">I"}
    if t in lens:
        f = lens[t]
        n = struct.unpack_from(f, b, i)[0]
        i += struct.calcsize(f)
        v = b[i:i + n]
        return (v if t <= 0xC6 else bytes(v).decode()), i + n
    if t in (0xDC, 0xDD, 0xDE, 0xDF):
        f = ">H" if t in (0xDC, 0xDE) else ">I"
        n = struct.unpack_from(f, b, i)[0]
        i += struct.calcsize(f)
        return (_arr if t <= 0xDD else _map)(b, i, n)
    raise ValueError("msgpack type 0x%02x at %d" % (t, i - 1))


def _arr(b, i, n):
    out = []
    for _ in range(n):
        v, i = unpack(b, i)
        out.append(v)
    return out, i


def _map(b, i, n):
    out = {}
    for _ in range(n):
        k, i = unpack(b, i)
        v, i = unpack(b, i)
        out[k] = v
    return out, i


def psnr(a, b):
    if len(a) != len(b): return -1.0
    sse = 0
    mv = memoryview(a), memoryview(b)
    for k in range(0, len(a), 1 << 16):
        sa, sb = mv[0][k:k + (1 << 16)], mv[1][k:k + (1 << 16)]
        sse += sum((x - y) * (x - y) for x, y in zip(sa, sb))
    if sse == 0: return 99.0
    return 10 * math.log10(255.0 * 255.0 * len(a) / sse)


def target(rule, w, h):
    mx, mn, s, maxpix = rule
    md = lambda v: max(s, int(round(v / s) * s))
    sc = lambda w, h, k: (md(round(w * k)), md(round(h * k)))
    k = max(min(mx / max(w, h), 1.0), mn / min(w, h))
    nw, nh = sc(w, h, k)
    if nw * nh > maxpix:
        nw, nh = sc(nw, nh, maxpix / (nw * nh))
    if max(nw, nh) > mx:
        nw, nh = sc(nw, nh, mx / max(nw, nh))
    return nw, nh


def pillow_refs(path):
    """Pillow's ViT and VAE inputs of one file, as BAGEL makes them."""
    from PIL import Image, ImageOps
    im = ImageOps.exif_transpose(Image.open(path))
    if im.mode == "RGBA" or im.info.get("transparency") is not None:
        im = im.convert("RGBA")
        white = Image.new("RGB", im.size, (255, 255, 255))
        white.paste(im, mask=im.split()[3])
        im = white
    else:
        im = im.convert("RGB")
    out = {}
    for name, rule in (("vit", (980, 378, 14, 2007040)), ("vae", (1024, 512, 16, 1806336))):
        w, h = target(rule, *im.size)
        out[name] = (w, h, im.resize((w, h), Image.BICUBIC).tobytes())
    return out


def psnr_fast(a, b):
    try:
        import numpy as np
    except ImportError:
        return psnr(a, b)
    if len(a) != len(b): return -1.0
    d = np.frombuffer(a, np.uint8).astype(np.int32) - np.frombuffer(b, np.uint8).astype(np.int32)
    sse = float((d * d).sum())
    return 99.0 if sse == 0 else 10 * math.log10(255.0 * 255.0 * len(a) / sse)


def main_pillow(rec_path, root, min_psnr, report):
    try:
        import PIL
    except ImportError:
        print("skipped: Pillow is not installed (Debian: python3-pil)")
        sys.exit(77)
    b = open(rec_path, "rb").read()
    i, bad, rows = 0, 0, []
    while i < len(b):
        r, i = unpack(b, i)
        if r.get("type") == "reject":
            print("FAIL rejected: %s" % r.get("error"))
            bad += 1
        if r.get("type") != "sample": continue
        for seg in r["segments"]:
            if seg.get("kind") != "image": continue
            ref = pillow_refs(os.path.join(root, seg["path"]))
            line = []
            for out in ("vit", "vae"):
                w, h, px = ref[out]
                t = seg.get(out)
                if t is None or t["shape"] != [h, w, 3]:
                    print("FAIL %s %s: shape %s, expected [%d, %d, 3]" % (seg["path"], out, t and t["shape"], h, w))
                    bad += 1
                    continue
                p = psnr_fast(bytes(t["data"]), px)
                rows.append((seg["path"], out, p))
                line.append("%s %dx%d %.2f dB" % (out, w, h, p))
                if p < min_psnr:
                    print("FAIL %s %s: PSNR %.2f dB < %.1f" % (seg["path"], out, p, min_psnr))
                    bad += 1
            if report: print("%-52s %s" % (seg["path"], "  ".join(line)))
    for out in ("vit", "vae"):
        q = [p for _, o, p in rows if o == out]
        if q: print("%s: n=%d psnr_min=%.2f psnr_mean=%.2f" % (out, len(q), min(q), sum(q) / len(q)))
    print("outputs=%d failures=%d" % (len(rows), bad))
    sys.exit(1 if bad or not rows else 0)


def main():
    rec_path = sys.argv[1]
    min_psnr = float(sys.argv[sys.argv.index("--min-psnr") + 1]) if "--min-psnr" in sys.argv else 35.0
    if "--pillow" in sys.argv:
        main_pillow(rec_path, sys.argv[sys.argv.index("--pillow") + 1], min_psnr, "--report" in sys.argv)
    data = sys.argv[2]
    alias = dict(a.split("=", 1) for k, a in zip(sys.argv, sys.argv[1:]) if k == "--alias")
    report = "--report" in sys.argv
    exp = {}
    for line in open(os.path.join(data, "expected.tsv")):
        if line.startswith("#"): continue
        name, out, w, h, fid = line.split()
        exp[(name, out)] = (int(w), int(h), fid)
    b = open(rec_path, "rb").read()
    i, seen, bad, psnrs = 0, set(), 0, []
    while i < len(b):
        r, i = unpack(b, i)
        if r.get("type") != "sample": continue
        for seg in r["segments"]:
            if seg.get("kind") != "image": continue
            shown = os.path.basename(seg["path"])
            name = alias.get(shown, shown)
            for out in ("vit", "vae"):
                if (name, out) not in exp: continue
                seen.add((name, out))
                w, h, fid = exp[(name, out)]
                t = seg.get(out)
                if t is None or t["shape"] != [h, w, 3]:
                    print("FAIL %s %s: shape %s, expected [%d, %d, 3]" % (shown, out, t and t["shape"], h, w))
                    bad += 1
                    continue
                if fid != "psnr":
                    if report: print("%-40s %s %dx%d size ok" % (name, out, w, h))
                    continue
                ref = lzma.decompress(open(os.path.join(data, "ref", "%s.%s.rgb.xz" % (name, out)), "rb").read())
                p = psnr(bytes(t["data"]), ref)
                psnrs.append((shown, out, p))
                if report: print("%-40s %s %dx%d psnr=%.2f" % (shown, out, w, h, p))
                if p < min_psnr:
                    print("FAIL %s %s: PSNR %.2f dB < %.1f" % (shown, out, p, min_psnr))
                    bad += 1
    # with aliases the records hold only the re-encoded files
    want = {k for k in exp if k[0] in alias.values()} if alias else set(exp)
    missing = want - seen
    for m in sorted(missing):
        print("FAIL %s %s: not in the records" % m)
    bad += len(missing)
    ps = [p for _, _, p in psnrs]
    for out in ("vit", "vae"):
        q = [p for _, o, p in psnrs if o == out]
        if q: print("%s: n=%d psnr_min=%.2f psnr_mean=%.2f" % (out, len(q), min(q), sum(q) / len(q)))
    print("outputs=%d psnr_checked=%d failures=%d" % (len(seen), len(ps), bad))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
