#!/usr/bin/env python3
"""read_events.py — print the scalars of TensorBoard event files as JSON lines.

A reader with the standard library alone, for checking a run without
TensorBoard (bagel-train's files, or any TensorFlow / PyTorch ones):

    read_events.py RUN_DIR_OR_FILE... [--text] [--strict]

Each argument is an event file or a directory searched (recursively) for
files named *tfevents*. Prints one line per scalar, in file order:

    {"file": "...", "wall_time": 1700000001.25, "step": 1, "tag": "train/loss", "value": 2.25}

Scalars are both kinds TensorBoard shows: simple_value (what torch's
add_scalar and bagelpipe write) and a one-element float or double tensor
with plugin "scalars" (tf.summary.scalar). Values that JSON cannot hold are
the strings "nan", "inf" and "-inf". --text also prints text summaries, with
"text" in place of "value".

Every record's framing and both CRC32Cs are checked: a bad CRC or a length
past the end of the file is an error (exit status 1) naming the file and the
offset. A record cut off at the very end is what a writer still writing
leaves: it is reported on stderr and ends that file, and it is an error only
with --strict.
"""
import json
import math
import os
import struct
import sys


def _crc_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc_table()


def crc32c(data):
    """CRC32C (Castagnoli), as TFRecord uses."""
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked_crc(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class FormatError(Exception):
    pass


def records(path, strict):
    """Yield (offset, data) for each record of a TFRecord file."""
    with open(path, "rb") as f:
        buf = f.read()
    off = 0
    while off < len(buf):
        if len(buf) - off < 12:
            truncated(path, off, strict)
            return
        header = buf[off:off + 8]
        (length,) = struct.unpack("<Q", header)
        (crc,) = struct.unpack("<I", buf[off + 8:off + 12])
        if crc != masked_crc(header):
            raise FormatError(f"{path}: offset {off}: length CRC mismatch (not a TFRecord file, or corrupt)")
        end = off + 12 + length + 4
        if end > len(buf):
            truncated(path, off, strict)
            return
        data = buf[off + 12:off + 12 + length]
        (crc,) = struct.unpack("<I", buf[end - 4:end])
        if crc != masked_crc(data):
            raise FormatError(f"{path}: offset {off}: data CRC mismatch in a {length}-byte record")
        yield off, data
        off = end


def truncated(path, off, strict):
    msg = f"{path}: offset {off}: the file ends inside a record (a writer still writing?)"
    if strict:
        raise FormatError(msg)
    print(f"read_events: {msg}", file=sys.stderr)


def fields(buf):
    """Decode one protobuf message into [(field, wire_type, value)]."""
    out, i, n = [], 0, len(buf)

    def varint():
        nonlocal i
        v, shift = 0, 0
        while True:
            if i >= n or shift > 63:
                raise FormatError("bad varint")
            b = buf[i]
            i += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return v

    while i < n:
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            v = varint()
        elif wire == 1:
            if i + 8 > n:
                raise FormatError("truncated fixed64")
            v = buf[i:i + 8]
            i += 8
        elif wire == 5:
            if i + 4 > n:
                raise FormatError("truncated fixed32")
            v = buf[i:i + 4]
            i += 4
        elif wire == 2:
            size = varint()
            if i + size > n:
                raise FormatError("length past the end of a message")
            v = buf[i:i + size]
            i += size
        else:
            raise FormatError(f"wire type {wire}")
        out.append((field, wire, v))
    return out


def int64(v):
    return v - (1 << 64) if v >= 1 << 63 else v


def plugin_name(metadata):
    for f, _, v in fields(metadata):
        if f == 1:  # SummaryMetadata.plugin_data
            for g, _, w in fields(v):
                if g == 1:
                    return w.decode("utf-8", "replace")
    return ""


def packed_or_single(wire, v, fmt, size):
    if wire == 2:
        return [struct.unpack(fmt, v[k:k + size])[0] for k in range(0, len(v), size)]
    return [struct.unpack(fmt, v)[0]]


def decode_value(value):
    """Summary.Value -> (tag, kind, payload) or None for kinds not printed."""
    tag, simple, tensor, plugin = "", None, None, ""
    for f, wire, v in fields(value):
        if f == 1:
            tag = v.decode("utf-8", "replace")
        elif f == 2 and wire == 5:
            simple = struct.unpack("<f", v)[0]
        elif f == 8:
            tensor = v
        elif f == 9:
            plugin = plugin_name(v)
    if simple is not None:
        return tag, "value", simple
    if tensor is None:
        return None
    floats, strings = [], []
    for f, wire, v in fields(tensor):
        if f == 5:  # float_val
            floats += packed_or_single(wire, v, "<f", 4)
        elif f == 6:  # double_val
            floats += packed_or_single(wire, v, "<d", 8)
        elif f == 8:  # string_val
            strings.append(v.decode("utf-8", "replace"))
    if plugin == "scalars" and len(floats) == 1:
        return tag, "value", floats[0]
    if plugin == "text" and strings:
        return tag, "text", strings[0] if len(strings) == 1 else strings
    return None


def json_number(x):
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def events(path, text, strict):
    for off, data in records(path, strict):
        wall, step, values = 0.0, 0, []
        try:
            for f, wire, v in fields(data):
                if f == 1 and wire == 1:
                    wall = struct.unpack("<d", v)[0]
                elif f == 2 and wire == 0:
                    step = int64(v)
                elif f == 5:
                    values += [w for g, _, w in fields(v) if g == 1]
        except FormatError as e:
            raise FormatError(f"{path}: offset {off}: {e}") from None
        for value in values:
            got = decode_value(value)
            if got is None or (got[1] == "text" and not text):
                continue
            tag, kind, payload = got
            yield {"file": path, "wall_time": wall, "step": step, "tag": tag,
                   kind: json_number(payload) if kind == "value" else payload}


def event_files(arg):
    if os.path.isdir(arg):
        found = []
        for root, _, names in os.walk(arg):
            found += [os.path.join(root, n) for n in names if "tfevents" in n]
        return sorted(found)
    return [arg]


def main(argv):
    args = [a for a in argv if not a.startswith("--")]
    flags = {a for a in argv if a.startswith("--")}
    unknown = flags - {"--text", "--strict"}
    if not args or unknown:
        print("usage: read_events.py RUN_DIR_OR_FILE... [--text] [--strict]", file=sys.stderr)
        return 2
    try:
        for arg in args:
            files = event_files(arg)
            if not files:
                print(f"read_events: {arg}: no event files (*tfevents*)", file=sys.stderr)
                return 1
            for path in files:
                for ev in events(path, "--text" in flags, "--strict" in flags):
                    print(json.dumps(ev, ensure_ascii=False))
    except (OSError, FormatError) as e:
        print(f"read_events: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
