#!/usr/bin/env python3
"""image_check.py — compare bagel-image's records with the Pillow references.

  image_check.py RECORDS DATA_DIR [--min-psnr 35] [--report]

RECORDS is a bagel-image output (msgpack records, read here with a minimal
decoder: Python's standard library only, as in CI). For every image segment,
its vit/vae shape must equal DATA_DIR/expected.tsv, and where the fidelity
column says psnr, the PSNR against DATA_DIR/ref/NAME.OUT.rgb.xz must reach
--min-psnr. Prints one line per output with --report, then a summary line;
exits 1 on any failure."""
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


def main():
    rec_path, data = sys.argv[1], sys.argv[2]
    min_psnr = float(sys.argv[sys.argv.index("--min-psnr") + 1]) if "--min-psnr" in sys.argv else 35.0
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
            name = os.path.basename(seg["path"])
            for out in ("vit", "vae"):
                if (name, out) not in exp: continue
                seen.add((name, out))
                w, h, fid = exp[(name, out)]
                t = seg.get(out)
                if t is None or t["shape"] != [h, w, 3]:
                    print("FAIL %s %s: shape %s, expected [%d, %d, 3]" % (name, out, t and t["shape"], h, w))
                    bad += 1
                    continue
                if fid != "psnr":
                    if report: print("%-40s %s %dx%d size ok" % (name, out, w, h))
                    continue
                ref = lzma.decompress(open(os.path.join(data, "ref", "%s.%s.rgb.xz" % (name, out)), "rb").read())
                p = psnr(bytes(t["data"]), ref)
                psnrs.append((name, out, p))
                if report: print("%-40s %s %dx%d psnr=%.2f" % (name, out, w, h, p))
                if p < min_psnr:
                    print("FAIL %s %s: PSNR %.2f dB < %.1f" % (name, out, p, min_psnr))
                    bad += 1
    missing = set(exp) - seen
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
