"""eval_wordnet.py — NLTK's WordNet reader over Debian's wordnet-base files
(/usr/share/wordnet, WordNet 3.0), for the golden generators of bagel-eval.

Debian's package does not ship `lexnames` (compiled into libwordnet), which
NLTK's reader wants at start-up; this module writes the 45-line table of the
lexicographer files (lexnames(5WN)) into a temporary folder beside symbolic
links to the Debian files, and opens the reader there. The table names lexical
files only; METEOR does not read it.

    from eval_wordnet import wordnet      # nltk.corpus.reader.WordNetCorpusReader
"""
import os
import tempfile

from nltk.corpus.reader.wordnet import WordNetCorpusReader

WORDNET_DIR = os.environ.get("BAGEL_WORDNET", "/usr/share/wordnet")

LEXNAMES = """adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute
noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group
noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession
noun.process noun.quantity noun.relation noun.shape noun.state noun.substance noun.time
verb.body verb.change verb.cognition verb.communication verb.competition verb.consumption
verb.contact verb.creation verb.emotion verb.motion verb.perception verb.possession
verb.social verb.stative verb.weather adj.ppl""".split()
SYNTAX = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}


def _reader():
    d = tempfile.mkdtemp(prefix="bagel-wordnet-")
    for name in os.listdir(WORDNET_DIR):
        os.symlink(os.path.join(WORDNET_DIR, name), os.path.join(d, name))
    with open(os.path.join(d, "lexnames"), "w") as f:
        for i, name in enumerate(LEXNAMES):
            f.write("%02d\t%s\t%d\n" % (i, name, SYNTAX[name.split(".")[0]]))
    return WordNetCorpusReader(d, None)


wordnet = _reader()
