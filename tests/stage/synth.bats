#!/usr/bin/env bats
# synth.bats — bagel-synth, the synthetic "shapes" dataset: deterministic by
# seed, every line of every format well formed, every image there at its size,
# and every caption, edit, answer and drawing step true of the pixels. The
# pixel checks use their own PNG decoder (python3 standard library) and know
# only the spec in docs/synthetic-data.md, none of the generator's code.

setup_file() {
    BIN=${BAGEL_BIN:-$PWD/build/bin}
    SYNTH="$BIN/bagel-synth"
    D=$(mktemp -d /tmp/bagel-synth-bats-XXXXXX)
    export BIN SYNTH D
    write_checker "$D/check.py"
    "$SYNTH" -q --out "$D/a" --seed 7
    "$SYNTH" -q --out "$D/b" --seed 7 --threads 1
    "$SYNTH" -q --out "$D/png" --seed 9 --count 40 --jpeg-fraction 0
}

teardown_file() {
    rm -rf "$D"
}

@test "the same seed gives byte-identical files, whatever the thread count" {
    diff -r "$D/a" "$D/b"
    [ "$(ls "$D/a")" = "$(printf '%s\n' conversations.jsonl edit.jsonl i2t.jsonl images interleaved.jsonl \
        sequence.jsonl t2i.jsonl vqa.jsonl)" ]
    # nothing left under a temporary name
    [ -z "$(find "$D/a" -name '*.tmp')" ]
}

@test "another seed gives another dataset" {
    "$SYNTH" -q --out "$D/c" --seed 8
    ! diff -rq "$D/a" "$D/c" >/dev/null
}

@test "a line depends on seed, format and line number alone; --size changes only pixels" {
    "$SYNTH" -q --out "$D/few" --seed 7 --count 8 --formats edit,t2i
    [ "$(ls "$D/few")" = "$(printf '%s\n' edit.jsonl images t2i.jsonl)" ]
    for f in t2i edit; do
        diff "$D/few/$f.jsonl" <(head -n 8 "$D/a/$f.jsonl")
    done
    for img in "$D"/few/images/*; do
        cmp "$img" "$D/a/images/$(basename "$img")"
    done
    "$SYNTH" -q --out "$D/big" --seed 7 --count 8 --formats t2i,edit --size 128
    diff "$D/big/t2i.jsonl" "$D/few/t2i.jsonl"
    diff "$D/big/edit.jsonl" "$D/few/edit.jsonl"
}

@test "every line is JSON in the shape of its format" {
    for f in t2i i2t edit vqa conversations sequence interleaved; do
        [ "$(wc -l <"$D/a/$f.jsonl")" -eq 64 ]
    done
    jq -e -s 'all(.[]; (.prompt|type=="string") and (.image_path|type=="string") and length==2)' "$D/a/t2i.jsonl"
    jq -e -s 'all(.[]; (.image_path|type=="string") and (.caption|type=="string")
        and ((.prompt|type=="string") or (has("prompt")|not)))' "$D/a/i2t.jsonl"
    jq -e -s 'any(.[]; has("prompt")) and any(.[]; has("prompt")|not)' "$D/a/i2t.jsonl"
    jq -e -s 'all(.[]; (.input_image|type=="string") and (.editing_steps|length>=1)
        and all(.editing_steps[]; (.instruction|type=="string") and (.result_image|type=="string")))
        and any(.[]; .editing_steps|length>1)' "$D/a/edit.jsonl"
    jq -e -s 'all(.[]; (.image|type=="string") and (.conversations|length>=2 and length%2==0)
        and (.conversations[0].value|startswith("<image>\n"))
        and ([.conversations[].value|scan("<image>")]|length==1)
        and ([.conversations[].from]|. == [range(length)|if .%2==0 then "human" else "gpt" end]))' "$D/a/vqa.jsonl"
    jq -e -s 'all(.[]; all(.conversations[]; (.role|IN("user","assistant","system"))
        and (if .type=="text" then (.content|type=="string") else .type=="image" and (.image_path|type=="string") end)))
        and any(.[]; .conversations[0].role=="system")' "$D/a/conversations.jsonl"
    jq -e -s 'all(.[]; all(.sequence[]; if .type=="text" then (.content|type=="string") and (.loss|type=="boolean")
        else .type=="image" and ([.und,.gen,.loss]|all(type=="boolean")) end))' "$D/a/sequence.jsonl"
    jq -e -s 'all(.[]; all(.interleaved[]; (.type=="text" and (.content|type=="string"))
        or (.type=="image" and (.image_path|type=="string"))))' "$D/a/interleaved.jsonl"
}

@test "every image named exists inside the dataset, once, at its size; PNG and JPEG both" {
    run /usr/bin/env python3 "$D/check.py" "$D/a" 64
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" =~ png=[1-9] ]]
    [[ "$output" =~ jpg=[1-9] ]]
    run /usr/bin/env python3 "$D/check.py" "$D/png" 64
    [ "$status" -eq 0 ]
    [[ "$output" == *" jpg=0"* ]]
    # JPEGs decode, where the libvips command-line tools are installed
    if command -v vips >/dev/null; then
        vips arrayjoin "$(ls "$D"/a/images/*.jpg | head -n 20 | tr '\n' ' ')" "$D/jpegs.v"
    fi
}

@test "captions, edits, answers and drawing steps are true of the pixels" {
    run /usr/bin/env python3 "$D/check.py" "$D/png"
    echo "$output"
    [ "$status" -eq 0 ]
    for f in t2i i2t edit vqa conversations sequence interleaved; do
        [[ "$output" =~ $f=[1-9] ]]
    done
    # and the checker is not blind: one wrong word and it fails
    cp -r "$D/png" "$D/bad"
    # line 5 of t2i: another size, still a well-formed caption
    sed -i '5{s/"prompt":"a small /"prompt":"a large /;t;s/"prompt":"a medium /"prompt":"a small /;t;s/"prompt":"a large /"prompt":"a medium /}' \
        "$D/bad/t2i.jsonl"
    ! diff -q "$D/bad/t2i.jsonl" "$D/png/t2i.jsonl" >/dev/null
    run /usr/bin/env python3 "$D/check.py" "$D/bad"
    [ "$status" -ne 0 ]
    cp "$D/png/t2i.jsonl" "$D/bad/t2i.jsonl"
    run /usr/bin/env python3 "$D/check.py" "$D/bad"
    [ "$status" -eq 0 ]
    # a colour swapped in an edit instruction
    sed -i '1,40{/"Make the [a-z]* \(red\|blue\)\./{s/\(Make the [a-z]*\) red\./\1 TMP./;s/\(Make the [a-z]*\) blue\./\1 red./;s/TMP/blue/}}' \
        "$D/bad/edit.jsonl"
    ! diff -q "$D/bad/edit.jsonl" "$D/png/edit.jsonl" >/dev/null
    run /usr/bin/env python3 "$D/check.py" "$D/bad"
    echo "$output"
    [ "$status" -ne 0 ]
}

@test "usage errors exit 2, an unwritable output 3" {
    run "$SYNTH" --out "$D/x"
    [ "$status" -eq 2 ]
    [[ "$output" == *"--seed is required"* ]]
    run "$SYNTH" --seed 1
    [ "$status" -eq 2 ]
    run "$SYNTH" --out "$D/x" --seed 1 --formats t2i,cats
    [ "$status" -eq 2 ]
    [[ "$output" == *'unknown format "cats"'* ]]
    run "$SYNTH" --out "$D/x" --seed 1 --jpeg-fraction 1.5
    [ "$status" -eq 2 ]
    run "$SYNTH" --out "$D/x" --seed 1 --size 8
    [ "$status" -eq 2 ]
    run "$SYNTH" --out "$D/x" --seed -1
    [ "$status" -eq 2 ]
    run "$SYNTH" --out /dev/null/x --seed 1
    [ "$status" -eq 3 ]
    [[ "$output" == *"/dev/null"* ]]
    run "$SYNTH" --help
    [ "$status" -eq 0 ]
    [ "$(echo "$output" | wc -l)" -le 24 ]
    run "$SYNTH" --version
    [[ "$output" == "bagel-synth "* ]]
}

# The checker: a PNG decoder and the spec, in the python3 standard library.
write_checker() {
    cat >"$1" <<'PYEOF'
# Independent check of a bagel-synth dataset (python3 standard library only).
#   check.py DIR      decode every PNG, read the scene off the pixels, compare
#                     it with what each JSONL line says about that image
#   check.py DIR PX   every image named exists, once, and is PX x PX
# It knows only the documented spec (docs/synthetic-data.md): the palette, the
# sizes, the 3x3 grid and the sentences; none of bagel-synth's code.
import collections, json, os, re, struct, sys, zlib

PALETTE = {
    "red": (220, 30, 30), "orange": (250, 140, 20), "yellow": (250, 220, 30),
    "green": (40, 160, 60), "blue": (30, 80, 220), "purple": (130, 50, 180),
    "pink": (250, 130, 190), "brown": (120, 70, 30), "black": (0, 0, 0),
    "white": (255, 255, 255), "gray": (128, 128, 128), "beige": (235, 220, 190),
}
SIZES = {"small": 0.20, "medium": 0.35, "large": 0.50}
POS = ["at the top left", "at the top", "at the top right", "on the left", "in the center",
       "on the right", "at the bottom left", "at the bottom", "at the bottom right"]
PLACE = [p.split(" ", 1)[1] for p in POS]
SHAPES = ["circle", "square", "triangle", "star", "cross"]
CAPTION = re.compile(r"^a (small|medium|large) (\w+) (circle|square|triangle|star|cross) (.+) on a (\w+) background$")

def fail(msg):
    sys.exit("check: " + msg)

def png_pixels(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        fail(path + ": not a PNG")
    pos, idat, hdr = 8, [], None
    while pos < len(data):
        n, typ = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if typ == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif typ == b"IDAT":
            idat.append(body)
        elif typ == b"IEND":
            break
    w, h, depth, ctype, _, _, interlace = hdr
    if (depth, ctype, interlace) != (8, 2, 0):
        fail(path + ": expected 8-bit RGB, not interlaced, got %r" % (hdr,))
    raw = zlib.decompress(b"".join(idat))
    stride = 3 * w
    out, prev = bytearray(), bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        ln = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride) if f else ():
            a = ln[i - 3] if i >= 3 else 0
            b = prev[i]
            c = prev[i - 3] if i >= 3 else 0
            if f == 1: ln[i] = (ln[i] + a) & 255
            elif f == 2: ln[i] = (ln[i] + b) & 255
            elif f == 3: ln[i] = (ln[i] + ((a + b) >> 1)) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                ln[i] = (ln[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
            else: fail(path + ": bad filter %d" % f)
        out += ln
        prev = ln
    return w, h, out

def dist(p, q):
    return sum((x - y) ** 2 for x, y in zip(p, q))

def nearest(rgb):
    return min(PALETTE, key=lambda n: dist(PALETTE[n], rgb))

def describe(path):
    """The scene read off the pixels: (size, colour, shape, position, background)."""
    w, h, px = png_pixels(path)
    pix = list(zip(px[0::3], px[1::3], px[2::3]))
    bg_rgb = pix[0]
    bg = nearest(bg_rgb)
    if PALETTE[bg] != bg_rgb:
        fail(path + ": background %r is not a palette colour" % (bg_rgb,))
    counts = collections.Counter(pix)
    del counts[bg_rgb]
    if not counts:
        return (None, None, None, None, bg)
    fg_rgb = max(counts, key=counts.get)
    colour = nearest(fg_rgb)
    if PALETTE[colour] != fg_rgb:
        fail(path + ": shape colour %r is not a palette colour" % (fg_rgb,))
    # a pixel is the shape's when nearer its colour than the background's
    near = {p: dist(p, fg_rgb) < dist(p, bg_rgb) for p in counts}
    near[bg_rgb] = False
    mask = [near[p] for p in pix]
    on = [i for i, m in enumerate(mask) if m]
    xs = [i % w for i in on]
    ys = [i // w for i in on]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    bw, bh = x1 - x0 + 1, y1 - y0 + 1
    extent = max(bw, bh) / w
    size = min(SIZES, key=lambda s: abs(SIZES[s] - extent))
    if abs(SIZES[size] - extent) > 0.06:
        fail("%s: extent %.3f is no documented size" % (path, extent))
    cx, cy = (x0 + x1 + 1) / 2 / w, (y0 + y1 + 1) / 2 / h
    pos = POS[int(cy * 3) * 3 + int(cx * 3)]
    # square and circle by how much of their box they fill; a triangle by its
    # full bottom row; a cross by its full middle column (a star's middle
    # column stops at the notch between its legs, about 3/4 down)
    fill = len(xs) / (bw * bh)
    bottom = sum(mask[y1 * w + x] for x in range(x0, x1 + 1)) / bw
    middle = max(sum(mask[y * w + x] for y in range(y0, y1 + 1)) for x in {(x0 + x1) // 2, (x0 + x1 + 1) // 2}) / bh
    if fill > 0.9: shape = "square"
    elif fill > 0.68: shape = "circle"
    elif bottom > 0.7: shape = "triangle"
    elif middle > 0.9: shape = "cross"
    else: shape = "star"
    return (size, colour, shape, pos, bg)

def parse_caption(text):
    m = CAPTION.match(text)
    if not m or m.group(4) not in POS:
        fail("not a caption: %r" % text)
    return (m.group(1), m.group(2), m.group(3), m.group(4), m.group(5))

def caption(s):
    return "a %s %s %s %s on a %s background" % s

def sentence(t):
    return t[0].upper() + t[1:] + "."

def apply_instruction(s, text):
    """The scene after the instruction; it must change exactly one property."""
    size, colour, shape, pos, bg = s
    m = re.match(r"^(Make|Turn|Move) the (\w+) ", text)
    if m and m.group(2) != shape:
        fail("%r names a %s, the image has a %s" % (text, m.group(2), shape))
    if m := re.match(r"^Make the \w+ (small|medium|large)\.$", text): t = (m.group(1), colour, shape, pos, bg)
    elif m := re.match(r"^Make the \w+ (\w+)\.$", text): t = (size, m.group(1), shape, pos, bg)
    elif m := re.match(r"^Turn the \w+ into a (\w+)\.$", text): t = (size, colour, m.group(1), pos, bg)
    elif m := re.match(r"^Move the \w+ to (.+)\.$", text): t = (size, colour, shape, POS[PLACE.index(m.group(1))], bg)
    elif m := re.match(r"^Change the background to (\w+)\.$", text): t = (size, colour, shape, pos, m.group(1))
    else: fail("not an instruction: %r" % text)
    if sum(a != b for a, b in zip(s, t)) != 1:
        fail("%r does not change exactly one property of %r" % (text, s))
    return t

class Checker:
    def __init__(self, root):
        self.root, self.n, self.cache = root, {}, {}

    def scene(self, rel):
        """The described scene, or None for a JPEG (not decodable here)."""
        if not rel.endswith(".png"):
            return None
        if rel not in self.cache:
            self.cache[rel] = describe(os.path.join(self.root, rel))
        return self.cache[rel]

    def same(self, rel, want, what):
        got = self.scene(rel)
        if got is not None and got != want:
            fail("%s: %s says %r, the pixels show %r" % (rel, what, want, got))
        self.n[what] = self.n.get(what, 0) + (got is not None)

    def t2i(self, j): self.same(j["image_path"], parse_caption(j["prompt"]), "t2i")
    def i2t(self, j): self.same(j["image_path"], parse_caption(j["caption"]), "i2t")

    def chain(self, start, steps, what):
        s = self.scene(start)
        for instr, rel in steps:
            if s is None:
                return
            s = apply_instruction(s, instr)
            self.same(rel, s, what)
            s = self.scene(rel)

    def edit(self, j):
        self.chain(j["input_image"], [(e["instruction"], e["result_image"]) for e in j["editing_steps"]], "edit")

    def vqa(self, j):
        c = j["conversations"]
        if not isinstance(j["image"], str) or sum(m["value"].count("<image>") for m in c) != 1 \
                or not c[0]["value"].startswith("<image>\n"):
            fail("vqa: one <image> marker, at the start, expected: %r" % c)
        s = self.scene(j["image"])
        if s is None:
            return
        size, colour, shape, pos, bg = s
        for q, a in zip(c[0::2], c[1::2]):
            if (q["from"], a["from"]) != ("human", "gpt"):
                fail("vqa: turns alternate human, gpt: %r" % c)
            t = q["value"].replace("<image>\n", "")
            if t == "What colour is the shape?": want = colour.capitalize() + "."
            elif t == "What shape is it?": want = "A %s." % shape
            elif t == "Is the shape small, medium or large?": want = size.capitalize() + "."
            elif t == "Where is the shape?": want = sentence(pos)
            elif t == "What colour is the background?": want = bg.capitalize() + "."
            elif t == "Describe the image.": want = sentence(caption(s))
            elif m := re.match(r"^Is the shape (\w+)\?$", t): want = "Yes." if m.group(1) == colour else "No."
            elif m := re.match(r"^Is there a (\w+) in the image\?$", t): want = "Yes." if m.group(1) == shape else "No."
            else: fail("vqa: unknown question %r" % t)
            if a["value"] != want:
                fail("%s: %r answered %r, the pixels say %r" % (j["image"], t, a["value"], want))
            self.n["vqa"] = self.n.get("vqa", 0) + 1

    def conversations(self, j):
        c = [m for m in j["conversations"] if m["role"] != "system"]
        if c[0]["type"] == "image":  # describe: image, question, answer
            s = self.scene(c[0]["image_path"])
            if s is not None and c[2]["content"] != sentence(caption(s)):
                fail("%s: described as %r, pixels show %r" % (c[0]["image_path"], c[2]["content"], s))
            self.n["conversations"] = self.n.get("conversations", 0) + (s is not None)
            return
        m = re.match(r"^(?:Draw|Please draw|Can you draw) (.+)[.?]$", c[0]["content"])
        self.same(c[1]["image_path"], parse_caption(m.group(1)), "conversations")
        if len(c) == 4:
            self.chain(c[1]["image_path"], [(c[2]["content"], c[3]["image_path"])], "conversations")

    def sequence(self, j):
        q = j["sequence"]
        for e in q:
            keys = ["loss"] if e["type"] == "text" else ["und", "gen", "loss"]
            if not all(isinstance(e.get(k), bool) for k in keys):
                fail("sequence: every flag explicit: %r" % e)
        if len(q) == 2 and q[0]["type"] == "text":
            self.same(q[1]["image_path"], parse_caption(q[0]["content"]), "sequence")
        elif len(q) == 2:
            self.same(q[0]["image_path"], parse_caption(q[1]["content"]), "sequence")
        else:
            self.chain(q[0]["image_path"], [(q[1]["content"], q[2]["image_path"])], "sequence")

    def interleaved(self, j):
        q = j["interleaved"]
        goal = parse_caption(re.match(r"^How to draw (.+)\.$", q[0]["content"]).group(1))
        m = re.match(r"^Step 1\. Fill the canvas with (\w+)\.$", q[1]["content"])
        self.same(q[2]["image_path"], (None, None, None, None, m.group(1)), "interleaved")
        m = re.match(r"^Step 2\. Draw a medium (\w+) (\w+) in the center\.$", q[3]["content"])
        s = ("medium", m.group(1), m.group(2), "in the center", goal[4])
        self.same(q[4]["image_path"], s, "interleaved")
        for k in range(5, len(q), 2):
            s = apply_instruction(s, re.sub(r"^Step \d+\. ", "", q[k]["content"]))
            self.same(q[k + 1]["image_path"], s, "interleaved")
        if s != goal:
            fail("interleaved: the steps end at %r, not at the title's %r" % (s, goal))

def image_size(path):
    """(width, height) from a PNG's IHDR or a JPEG's SOF marker."""
    data = open(path, "rb").read()
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    if data[:3] != b"\xff\xd8\xff" or not data.endswith(b"\xff\xd9"):
        fail(path + ": neither a PNG nor a whole JPEG")
    pos = 2
    while pos + 4 <= len(data):
        marker, n = data[pos + 1], struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            h, w = struct.unpack(">HH", data[pos + 5:pos + 9])
            return w, h
        pos += 2 + n
    fail(path + ": JPEG without a frame header")

def check_files(root, px):
    """Every image named exists inside root, at the right size, is named once,
    and every file under images/ is named."""
    named = []
    def walk(v):
        if isinstance(v, dict):
            for k, x in v.items():
                if k in ("image_path", "image", "input_image", "result_image"):
                    named.append(x)
                else:
                    walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
    for f in sorted(os.listdir(root)):
        if f.endswith(".jsonl"):
            for line in open(os.path.join(root, f)):
                walk(json.loads(line))
    for rel in named:
        if rel.startswith("/") or ".." in rel.split("/"):
            fail(rel + ": not a path inside the dataset")
        if image_size(os.path.join(root, rel)) != (px, px):
            fail("%s: size %r, expected %dx%d" % (rel, image_size(os.path.join(root, rel)), px, px))
    files = ["images/" + f for f in os.listdir(os.path.join(root, "images"))]
    if sorted(named) != sorted(files):
        fail("images named %d times, %d files under images/" % (len(named), len(files)))
    ext = lambda e: sum(r.endswith(e) for r in named)
    print("images=%d png=%d jpg=%d" % (len(named), ext(".png"), ext(".jpg")))

root = sys.argv[1]
if len(sys.argv) > 2:
    check_files(root, int(sys.argv[2]))
    sys.exit(0)
ck = Checker(root)
for fmt in ["t2i", "i2t", "edit", "vqa", "conversations", "sequence", "interleaved"]:
    path = os.path.join(root, fmt + ".jsonl")
    if os.path.exists(path):
        for line in open(path):
            getattr(ck, fmt)(json.loads(line))
print(" ".join("%s=%d" % kv for kv in sorted(ck.n.items())))
PYEOF
}
