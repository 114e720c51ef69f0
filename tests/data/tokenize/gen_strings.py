#!/usr/bin/env python3
"""gen_strings.py — the tokenizer golden strings (issue 4), deterministic.

Writes strings.jsonl: one JSON string a line, 24,000 of them, made from a
fixed seed with the standard library only, so the file is the same on every
machine with this script. They exercise what the Qwen2 pre-tokenizer pattern
and the NFC normalizer treat specially: every Unicode general category, letter
and number runs, the contractions in every case (and U+017F, which folds to s),
whitespace runs of every White_Space character with and without CR/LF, CJK,
emoji with ZWJ sequences, skin tones and flags, combining marks that NFC
composes or reorders, Hangul jamo, digit runs, code, control characters, and
text around and inside the added tokens' strings (<|im_start|>, <think>, ...).
The ids HuggingFace tokenizers gives them are in ids.txt (see README.md).

    python3 tests/data/tokenize/gen_strings.py > tests/data/tokenize/strings.jsonl
"""
import json
import random
import sys
import unicodedata

N = 24000
rng = random.Random(20240604)

WORDS = ("the of and to in is you that it he was for on are as with his they I at be this have from or one had by "
         "word but not what all were we when your can said there use an each which she do how their if will up "
         "other about out many then them these so some her would make like him into time has look two more write "
         "go see number no way could people my than first water been call who oil its now find long down day did "
         "get come made may part tokenizer BAGEL Qwen2 HuggingFace GPT naïve café résumé Zürich façade").split()
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"]
WS = [" ", "  ", "\t", "\n", "\r", "\r\n", "\n\n", "\x0b", "\x0c", "\x85", "\xa0", "\u1680", "\u2000", "\u2002",
      "\u2009", "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\u200b", "\ufeff", "\x1c", "\x1d",
      "\x1e", "\x1f", "\u180e", "\u2060"]
PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + ["…", "—", "–", "«", "»", "“", "”", "‘", "’", "¿", "¡", "§",
                                                     "©", "®", "™", "°", "±", "×", "÷", "€", "£", "¥", "。", "、",
                                                     "，", "！", "？", "「", "」", "・", "♪", "→", "∑", "√", "∞"]
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
           "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
           "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
           "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>",
           "</tool_response>", "<think>", "</think>"]
NEAR_SPECIAL = ["<|im_start", "im_start|>", "<|im_start|", "<|IM_START|>", "< |im_end|>", "<|im_end|>>", "<<think>",
                "<think", "</think", "<|endoftext", "<|", "|>", "<||>"]
CJK = ("我们在这里训练一个统一的多模态模型它既能理解也能生成图像和文字中文分词测试北京上海深圳广州"
       "日本語のテキストをトークン化しますひらがなカタカナ漢字東京大阪"
       "한국어텍스트토큰화테스트서울부산안녕하세요")
EMOJI = ["😀", "👍", "👍🏽", "❤️", "🇨🇳", "🇺🇸", "👨‍👩‍👧‍👦", "👩🏾‍💻", "🏳️‍🌈", "🧑‍🤝‍🧑", "😂😂😂", "🙂", "✨", "🔥",
         "#️⃣", "1️⃣", "🫠", "🪿", "👁‍🗨", "🐈‍⬛", "\u200d", "\ufe0f", "\U0001f3fb"]
# sequences NFC changes: compositions, reordering, singletons, Hangul jamo
NFC_CASES = ["e\u0301", "E\u0301", "a\u030a", "A\u030a\u0301", "o\u0308\u0304", "n\u0303", "c\u0327", "\u212b",
             "\u2126", "\u212a", "a\u0323\u0302", "a\u0302\u0323", "\u1100\u1161", "\u1100\u1161\u11a8",
             "\u1112\u1161\u11ab", "\u0344", "\u0958", "\u0915\u093c", "i\u0307", "\u00c5\u0301", "s\u0323\u0307",
             "\u1e9b\u0323", "\u0041\u0300\u0316", "\u05d0\u05b8", "\u0627\u0653", "\u3071\u309a",
             "\u304b\u3099", "\u0cc6\u0cc2", "\u0b47\u0b3e", "u\u0308\u0301", "\u0301", "\u0301\u0301x"]
SCRIPTS = ["Привет, как дела? Всё хорошо.", "Γειά σου Κόσμε, αβγδ ΑΒΓΔ", "مرحبا بالعالم ١٢٣ ٤٥٦",
           "שלום עולם", "नमस्ते दुनिया १२३", "สวัสดีชาวโลก ๑๒๓", "ᚠᛇᚻ᛫ᛒᛦᚦ", "ქართული ენა", "Հայերեն",
           "አማርኛ", "ᐃᓄᒃᑎᑐᑦ", "ꦧꦱꦗꦮ", "𐍈𐌰𐌿𐍃", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕄𝕒𝕥𝕙 𝟙𝟚𝟛", "Ⅻ ⅻ ⅷ ½ ¾ ² ³ ⁴ ① ② ⑳",
           "İstanbul ıi ß ẞ ǅ ǈ ǋ ﬁ ﬀ", "Ǆemal ǅemal", "Tiếng Việt có dấu", "Ölçek ğüşıöç"]
CODE = ['def f(x):\n    return x ** 2\n', 'for (int i = 0; i < n; i++) {\n\tsum += a[i];\n}\n',
        'if __name__ == "__main__":\n    main()\n', '#include <stdio.h>\nint main(void) { puts("hi"); }\n',
        '    \n        x = [1, 2, 3]  # comment\n', 'SELECT * FROM t WHERE id = 42;', '$ ls -la | grep .py\n',
        'const f = (a, b) => a + b;', '<div class="x">Hello</div>', '{"key": [1, 2.5, -3e10, null]}',
        'fn main() { println!("{}", 1_000_000); }', 'a+=b;c-=d;e*=f', '/* comment */\r\n', '\\n\\t\\\\',
        '0x1F 0b1010 1e-9 3.14159 -0.5', 'x==y!=z<=w>=v', '    ', '\t\t', 'λx.x', "f'{x!r}'"]
NUMBERS = ["0", "7", "42", "123", "2024", "1234567890", "3.14", "1,000,000", "99%", "١٢٣", "४२", "௧௨",
           "12abc", "abc12", "a1b2c3", "0.0001", "10^9", "٣.١٤", "Ⅸ", "½", "²", "𝟗"]


def cat_chars():
    """code points by general category (of this Python's Unicode), BMP and beyond, no surrogates"""
    by = {}
    for cp in range(0x30000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        by.setdefault(unicodedata.category(chr(cp)), []).append(chr(cp))
    return by


CATS = cat_chars()
CAT_NAMES = sorted(CATS)


def word():
    w = rng.choice(WORDS)
    r = rng.random()
    if r < 0.1:
        return w.upper()
    if r < 0.2:
        return w.capitalize()
    return w


def ws():
    return "".join(rng.choice(WS) for _ in range(rng.choice([1, 1, 1, 2, 3, 5])))


def contraction():
    c = rng.choice(CONTRACTIONS)
    c = "".join(ch.upper() if rng.random() < 0.5 else ch for ch in c)
    if "s" in c.lower() and rng.random() < 0.1:
        c = c.replace("s", "\u017f").replace("S", "\u017f")
    if rng.random() < 0.05:
        c = c.replace("'", "’")
    return c


def piece(kind):
    if kind == 0:
        return word()
    if kind == 1:
        return word() + contraction()
    if kind == 2:
        return rng.choice(PUNCT) * rng.choice([1, 1, 2, 3])
    if kind == 3:
        return ws()
    if kind == 4:
        return rng.choice(NUMBERS) if rng.random() < 0.5 else str(rng.randrange(10 ** rng.randrange(1, 15)))
    if kind == 5:
        return "".join(rng.choice(CJK) for _ in range(rng.randrange(1, 12)))
    if kind == 6:
        return "".join(rng.choice(EMOJI) for _ in range(rng.randrange(1, 4)))
    if kind == 7:
        return rng.choice(NFC_CASES)
    if kind == 8:
        return rng.choice(SPECIAL)
    if kind == 9:
        return rng.choice(NEAR_SPECIAL)
    if kind == 10:
        s = rng.choice(SCRIPTS)
        a = rng.randrange(len(s))
        return s[a:a + rng.randrange(1, 20)]
    if kind == 11:
        return rng.choice(CODE)
    if kind == 12:
        cat = rng.choice(CAT_NAMES)
        return "".join(rng.choice(CATS[cat]) for _ in range(rng.randrange(1, 4)))
    if kind == 13:
        return chr(rng.choice([0, 1, 7, 8, 0x1b, 0x7f, 0x80, 0x9f, 0xad, 0x34f, 0x200c, 0x200d, 0x200e, 0xfffd]))
    return "'" + rng.choice(["s", "t", "re", "ve", "m", "ll", "d", "S", "LL", "x", "", " ", "1"])


def sentence():
    n = rng.choice([1, 2, 3, 5, 8, 13, 21, 40])
    weights = [30, 6, 8, 14, 6, 5, 3, 4, 2, 2, 4, 3, 5, 1, 2]
    kinds = rng.choices(range(len(weights)), weights, k=n)
    out = []
    for k in kinds:
        out.append(piece(k))
        if k in (0, 1, 4) and rng.random() < 0.6:
            out.append(" ")
    return "".join(out)


def focused(i):
    """strings that each stress one rule"""
    k = i % 12
    if k == 0:  # one category, alone and around a space or a letter
        cat = CAT_NAMES[(i // 12) % len(CAT_NAMES)]
        chars = "".join(rng.choice(CATS[cat]) for _ in range(rng.randrange(1, 6)))
        return rng.choice(["{}", " {}", "a{}", "{}a", "{} ", "1{}", "{}\n", " {}x", "'{}"]).format(chars)
    if k == 1:  # whitespace runs, with and without newlines, before words and at the end
        return rng.choice(["", "x", "x "]) + "".join(rng.choice(WS) for _ in range(rng.randrange(1, 9))) + \
            rng.choice(["", "y", " y", "!", "1", "\n", "中"])
    if k == 2:  # contractions in every case
        return rng.choice(["", "I", "you", "WE", "it", " ", "x"]) + contraction() + rng.choice(
            ["", " ", "a", "s", "ll", "!", "'s", "1"])
    if k == 3:  # digit runs
        return rng.choice(["", " ", "a", "$"]) + "".join(rng.choice("0123456789٠١٢३४५½²") for _ in
                                                         range(rng.randrange(1, 30))) + rng.choice(["", "px", " ", "."])
    if k == 4:  # long runs
        unit = rng.choice(["a", "ab", " ", "=", "\n", "1", "中", "é", " \n", "-", "😀", "ſ"])
        return unit * (rng.randrange(50, 600) if (i // 12) % 4 == 0 else rng.randrange(2, 50))
    if k == 5:  # NFC
        return "".join(rng.choice(NFC_CASES + WORDS[:5]) for _ in range(rng.randrange(1, 6)))
    if k == 6:  # special tokens in text
        return "".join(rng.choice(SPECIAL + NEAR_SPECIAL + [" ", "\n", "hi", "user", "😀", "é"]) for _ in
                       range(rng.randrange(1, 7)))
    if k == 7:  # chat layout
        return f"<|im_start|>{rng.choice(['user', 'assistant', 'system'])}\n{sentence()}<|im_end|>\n"
    if k == 8:  # code
        return "".join(rng.choice(CODE) for _ in range(rng.randrange(1, 5)))
    if k == 9:  # emoji
        return "".join(rng.choice(EMOJI + [" ", "a", "!"]) for _ in range(rng.randrange(1, 8)))
    if k == 10:  # random code points from anywhere (assigned or not)
        return "".join(chr(rng.choice([rng.randrange(0x20, 0x3000), rng.randrange(0x3000, 0x30000)]))
                       for _ in range(rng.randrange(1, 10))).replace("\ud800", "")
    return sentence()


def main():
    out = ["", " ", "\n", "a", "hello world", "Hello, world!", " hello", "hello ", "  hello", "I'm here",
           "<|im_start|>", "<|im_start|>user\nHello<|im_end|>"]
    i = 0
    while len(out) < N:
        s = focused(i) if i % 2 == 0 else sentence()
        i += 1
        # no lone surrogates: they are not text (and not UTF-8)
        s = "".join(c for c in s if not 0xD800 <= ord(c) <= 0xDFFF)
        out.append(s)
    w = sys.stdout
    for s in out:
        w.write(json.dumps(s, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
