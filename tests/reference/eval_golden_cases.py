#!/usr/bin/env python3
"""eval_golden_cases.py — the hypothesis/reference pairs of bagel-eval's golden
tests (issue 11). Deterministic (seeded); run once, output committed:

    /usr/bin/python3 tests/reference/eval_golden_cases.py > tests/data/eval/cases.jsonl

One JSON object a line, {"id", "prediction", "references": [...], "kind"}, the
input format of bagel-eval. The scores come from the reference
implementations (eval_golden_sacrebleu.py, eval_golden_meteor.py), never from
this file. Synonym swaps use WordNet through Debian's python3-nltk when it is
importable (eval_wordnet.py), so METEOR's synonym stage has work to do; the
pairs are plain text either way.

Kinds: en (English sentences and perturbations of them), num (numbers, money,
ranges, decimals), uni (accents, curly quotes, dashes, non-ASCII spaces, Greek
and Cyrillic, emoji, dotted capital I, Kelvin sign), zh (Chinese mixed with
ASCII, full-width punctuation), empty (empty and blank sides), ml (several
lines: ROUGE-Lsum, 13a's hyphen-newline rule), html (entities, <skipped>),
long (100+ words), same (identical sides), multi (2-4 references).
"""
import json
import random
import sys

rng = random.Random(11)

NOUNS = """cat dog house car man woman child city country party army command guide action
military principle road river tree book letter story table window door street school
teacher student game team player ball field market price company worker office paper
report plan system problem question answer idea reason result change moment morning
night week year day hour minute water fire light sound voice music picture film camera
phone computer program network file record sample image model train station bridge
island mountain forest garden flower bird fish horse cow sheep chicken egg bread apple
orange sugar salt coffee tea milk glass bottle box bag shoe shirt hat coat bed chair
room kitchen wall floor roof hospital doctor nurse patient medicine church king queen
president government law court judge police officer soldier war peace danger safety
hound auto automobile machine boat ship plane sky sun moon star cloud rain snow wind
storm""".split()
VERBS = """run walk talk see look watch hear listen speak say tell ask answer give take
make build write read learn teach buy sell pay send bring carry hold keep leave move
stop start open close begin finish win lose play work help need want like love hate
know think believe feel seem become grow rise fall drive ride fly swim sing dance cook
eat drink sleep wake sit stand lie die kill save spend jump climb push pull throw catch
break fix cut draw paint travel arrive return follow lead meet visit purchase heed obey
ensure guarantee bark chase""".split()
ADJS = """big small large little old new young good bad great high low long short fast
quick slow rapid hot cold warm cool dark bright happy sad easy hard strong weak rich
poor early late heavy light full empty clean dirty quiet loud safe dangerous free busy
red blue green white black yellow brown simple complex true false real main whole
practical lazy brown sharp soft""".split()
ADVS = """quickly slowly rapidly always never often sometimes usually really very quite
almost nearly forever together again already still soon later today yesterday here
there everywhere carefully loudly quietly""".split()
FUNC = """the a an this that these those my your his her its our their some any every
no each""".split()
PREPS = "in on at to from with without under over near behind before after into of for by about".split()
CONJ = "and but or so because while when although".split()


def inflect_noun(w):
    if w.endswith(("s", "x", "ch", "sh")):
        return w + "es"
    if w.endswith("y") and w[-2] not in "aeiou":
        return w[:-1] + "ies"
    return w + "s"


def inflect_verb(w):
    forms = [w, w + "s", w + "ed", w + "ing"]
    if w.endswith("e"):
        forms = [w, w + "s", w + "d", w[:-1] + "ing"]
    if w.endswith("y") and w[-2] not in "aeiou":
        forms[1] = w[:-1] + "ies"
        forms[2] = w[:-1] + "ied"
    return rng.choice(forms)


def noun_phrase():
    parts = [rng.choice(FUNC)]
    if rng.random() < 0.5:
        parts.append(rng.choice(ADJS))
    n = rng.choice(NOUNS)
    parts.append(inflect_noun(n) if rng.random() < 0.3 else n)
    return parts


def clause():
    words = noun_phrase()
    if rng.random() < 0.3:
        words.append(rng.choice(ADVS))
    words.append(inflect_verb(rng.choice(VERBS)))
    if rng.random() < 0.7:
        words += noun_phrase()
    if rng.random() < 0.5:
        words.append(rng.choice(PREPS))
        words += noun_phrase()
    return words


def sentence(min_words=4):
    words = clause()
    while len(words) < min_words or rng.random() < 0.25:
        words.append(rng.choice(CONJ))
        words += clause()
    if rng.random() < 0.4:
        i = rng.randrange(1, len(words))
        words[i] = words[i] + ","
    words[0] = words[0].capitalize() if rng.random() < 0.8 else words[0]
    end = rng.choice([".", ".", ".", "!", "?", "", "...", ";"])
    return " ".join(words) + end


try:
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from eval_wordnet import wordnet

    def synonym(w):
        names = sorted({l.name() for s in wordnet.synsets(w) for l in s.lemmas() if "_" not in l.name()} - {w})
        return rng.choice(names) if names else w
except Exception:  # no nltk: the synonym swap keeps the word
    def synonym(w):
        return w


def perturb(text, strength):
    words = text.split()
    out = []
    for w in words:
        r = rng.random()
        if r < strength * 0.25:
            continue  # drop
        if r < strength * 0.5:
            core = w.strip(",.!?;")
            out.append(w.replace(core, synonym(core.lower()), 1) if core else w)
            continue
        if r < strength * 0.65:
            core = w.strip(",.!?;")
            tail = w[len(core):] if w.startswith(core) else ""
            out.append(rng.choice([core + "s", core + "ed", core + "ing", core[:-1] if len(core) > 3 else core]) + tail)
            continue
        if r < strength * 0.75:
            out.append(w.upper() if rng.random() < 0.5 else w.lower())
            continue
        out.append(w)
        if rng.random() < strength * 0.1:
            out.append(rng.choice(NOUNS + ADVS + FUNC))
    if len(out) > 2 and rng.random() < strength:
        i = rng.randrange(len(out) - 1)
        out[i], out[i + 1] = out[i + 1], out[i]
    if len(out) > 4 and rng.random() < strength * 0.5:
        i = rng.randrange(len(out) // 2)
        out = out[i:] + out[:i]
    s = " ".join(out)
    if rng.random() < 0.2:
        s = s.replace(" ,", ",").replace(",", rng.choice([" ,", ";", ""]))
    return s


def num_text():
    pieces = [
        "It costs ${}.{:02d}, ok?".format(rng.randint(0, 999), rng.randint(0, 99)),
        "{:,} people came on {}-{}-{}".format(rng.randint(1000, 9999999), rng.randint(1990, 2030), rng.randint(1, 12), rng.randint(1, 28)),
        "pages {}-{} of {}".format(rng.randint(1, 50), rng.randint(51, 99), rng.randint(100, 500)),
        "{}.{}% of {} items".format(rng.randint(0, 100), rng.randint(0, 9), rng.randint(2, 80)),
        "version {}.{}.{} was released in {}.".format(rng.randint(0, 9), rng.randint(0, 20), rng.randint(0, 9), rng.randint(1999, 2026)),
        "{} x {} = {}".format(rng.randint(2, 12), rng.randint(2, 12), rng.randint(4, 144)),
        "call 555-{:04d} or +1 (800) {}".format(rng.randint(0, 9999), rng.randint(100, 999)),
        "the score was {}:{} after {} minutes".format(rng.randint(0, 5), rng.randint(0, 5), rng.randint(1, 90)),
        "{}.".format(rng.randint(1, 3000)),
        ".{} and {}. and -{} and {}-".format(rng.randint(1, 9), rng.randint(1, 9), rng.randint(1, 9), rng.randint(1, 9)),
        "A-{} x--y 1.a a.1 1,2,3 a.,b".format(rng.randint(1, 9)),
    ]
    k = rng.randint(1, 3)
    return " ".join(rng.sample(pieces, k)) + (" " + sentence() if rng.random() < 0.5 else "")


UNI_WORDS = ["café", "naïve", "résumé", "Straße", "Ångström", "über", "coöperate", "façade",
             "İstanbul", "İİ", "\u212aelvin", "ΣΑΣ", "Σίσυφος", "ΟΔΟΣ", "Москва", "привет",
             "мир", "日本", "😀", "🎉party", "e\u0301t\u0301e\u0301", "Mr. Smith’s", "“quoted”",
             "it’s", "em—dash", "en–dash", "…", "•", "€5", "£3.20", "©2024", "x²", "½",
             "\u00a0", "\u3000", "\u2009", "\u200b", "\u2028", "\u0085", "ﬁne", "ǅemal",
             "ΐ", "Ǆ", "ß", "ẞ", "ﬀ", "Ⅻ", "①", "٣", "١٢", "क", "ą", "Łódź", "ÇA", "ÉCOLE",
             "«bonjour»", "¿qué?", "¡hola!", "señor", "Øre", "æble", "þorn", "ﬄ",
             "\u0130", "\u0131", "ΆΈΉ", "ЁЖ", "\U0001d400", "𝔘𝔫𝔦", "☃", "✓", "⟨x⟩"]


def uni_text():
    words = sentence().split()
    for _ in range(rng.randint(1, 4)):
        words.insert(rng.randrange(len(words) + 1), rng.choice(UNI_WORDS))
    sep = rng.choice([" ", " ", " ", "\u00a0", "\u3000", "\t", "  "])
    return sep.join(words)


ZH_CHARS = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严"
ZH_PUNCT = "，。！？：；、（）《》“”「」…—～"


def zh_text():
    out = []
    for _ in range(rng.randint(1, 4)):
        n = rng.randint(2, 15)
        out.append("".join(rng.choice(ZH_CHARS) for _ in range(n)))
        r = rng.random()
        if r < 0.3:
            out.append(str(rng.randint(0, 2030)))
        elif r < 0.45:
            out.append(rng.choice(["AI", "BAGEL", "GPU", "iPhone", "3.5", "1,000", "e-mail", "Hello, world!"]))
        elif r < 0.55:
            out.append(rng.choice(["\u20ac", "\u2014", "\u2019", "\u2600", "\u3000", "\uff08", "\uff10", "\u2f00", "\U00020001", "\u2a6d", "\u2fa1"]))
        out.append(rng.choice(ZH_PUNCT))
    sep = "" if rng.random() < 0.7 else " "
    return sep.join(out)


def zh_perturb(s):
    chars = list(s)
    for _ in range(rng.randint(0, max(1, len(chars) // 5))):
        if not chars:
            break
        i = rng.randrange(len(chars))
        r = rng.random()
        if r < 0.4:
            del chars[i]
        elif r < 0.8:
            chars[i] = rng.choice(ZH_CHARS)
        else:
            chars.insert(i, rng.choice(ZH_PUNCT + " "))
    return "".join(chars)


def ml_text():
    lines = [sentence() for _ in range(rng.randint(2, 5))]
    seps = ["\n", "\n", "\n\n", "\r\n", "-\n", " \n", "\n \n"]
    s = lines[0]
    for ln in lines[1:]:
        s += rng.choice(seps) + ln
    return s


def html_text():
    bits = ["&quot;Hi&quot;", "&amp;", "&amp;lt;", "&lt;b&gt;bold&lt;/b&gt;", "<skipped>", "<b>tag</b>",
            "AT&T", "&#39;", "&nbsp;", "a&b", "&gt;&gt;", "x<skipped>y"]
    words = sentence().split()
    for _ in range(rng.randint(1, 3)):
        words.insert(rng.randrange(len(words) + 1), rng.choice(bits))
    return " ".join(words)


def long_text():
    return " ".join(sentence() for _ in range(rng.randint(6, 14)))


def empty_case():
    blanks = ["", " ", "\t", "\n", "   \n  ", "...", "!!! ...", "-", "\u00a0", "\u3000"]
    s = sentence()
    r = rng.random()
    if r < 0.35:
        return rng.choice(blanks), [s]
    if r < 0.6:
        return s, [rng.choice(blanks)]
    if r < 0.8:
        return rng.choice(blanks), [rng.choice(blanks)]
    return s, [rng.choice(blanks), perturb(s, 0.4)]


def make(kind):
    if kind == "en":
        ref = sentence()
        hyp = perturb(ref, rng.choice([0.1, 0.3, 0.5, 0.8, 1.0]))
        if rng.random() < 0.1:
            hyp = sentence()
        return hyp, [ref]
    if kind == "num":
        ref = num_text()
        hyp = perturb(ref, 0.3) if rng.random() < 0.6 else num_text()
        return hyp, [ref]
    if kind == "uni":
        ref = uni_text()
        hyp = perturb(ref, 0.3) if rng.random() < 0.7 else uni_text()
        return hyp, [ref]
    if kind == "zh":
        ref = zh_text()
        refs = [ref] + ([zh_perturb(ref)] if rng.random() < 0.3 else [])
        return zh_perturb(ref), refs
    if kind == "empty":
        return empty_case()
    if kind == "ml":
        ref = ml_text()
        hyp = "\n".join(perturb(x, 0.4) for x in rng.sample(ref.split("\n"), len(ref.split("\n"))))
        return hyp, [ref]
    if kind == "html":
        ref = html_text()
        return perturb(ref, 0.2), [ref]
    if kind == "long":
        ref = long_text()
        return perturb(ref, 0.3), [ref]
    if kind == "same":
        s = rng.choice([sentence, num_text, uni_text, zh_text])()
        return s, [s]
    if kind == "multi":
        base = sentence()
        refs = [base] + [perturb(base, 0.5) for _ in range(rng.randint(1, 3))]
        rng.shuffle(refs)
        return perturb(base, 0.4), refs
    raise ValueError(kind)


PLAN = [("en", 600), ("num", 140), ("uni", 160), ("zh", 160), ("empty", 60), ("ml", 80),
        ("html", 50), ("long", 40), ("same", 40), ("multi", 170)]

rows = []
for kind, n in PLAN:
    for i in range(n):
        hyp, refs = make(kind)
        rows.append({"id": "%s-%04d" % (kind, i), "prediction": hyp, "references": refs, "kind": kind})
rng.shuffle(rows)
for r in rows:
    sys.stdout.write(json.dumps(r, ensure_ascii=False) + "\n")
