"""Build the redistributable demo data set in data/demo/ from ColBERT (MIT) and a word list written here.

    python scripts/build_demo_data.py [--colbert PATH] [--out DIR] [--seed N]

Reads ColBERT's `dev.csv` (columns text, humor True/False; default ../shared/data/colbert_humor/dev.csv beside
the repository) and writes, with a fixed seed and nothing but the standard library:

* labeled.tsv  lang, label, text: 2,000 jokes (1) + 2,000 news headlines (0), shuffled (format of data/sample).
* prompts.tsv  MWAHAHA task-a TSV (id, word1, word2, headline; '-' for unused): 300 ColBERT headlines that are not
               in labeled.tsv + 300 pairs of unrelated nouns from WORDS below, interleaved; ids en_d0001...

Texts are kept as they are except that runs of whitespace become one space. Rows are deduplicated ignoring case
and whitespace, and texts that occur with both labels are dropped. The run ends with checks of what it wrote.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import unicodedata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_COLBERT = REPO.parent / "shared" / "data" / "colbert_humor" / "dev.csv"
DEFAULT_OUT = REPO / "data" / "demo"
SEED = 20260117

N_JOKES = 2000
N_NOT = 2000
N_HEADLINE_PROMPTS = 300
N_WORD_PROMPTS = 300
TEXT_LEN = (3, 300)
HEADLINE_LEN = (20, 120)
MAX_WORD_USES = 3

# Concrete English nouns written for this project (common to rare), grouped so that a pair never takes two words
# of one group: the two words of a prompt should be unrelated, as in MWAHAHA ("cactus, lawsuit"). All lowercase,
# one word, at least 4 letters, and no word is part of another (checked below).
WORD_GROUPS = {
    "animal": """penguin giraffe octopus hamster walrus flamingo camel badger beaver lobster llama koala panda
        pelican squirrel raccoon hedgehog moose ostrich parrot goldfish jellyfish donkey turtle rabbit kangaroo
        zebra buffalo falcon chameleon sloth alpaca armadillo platypus porcupine otter caterpillar scorpion
        tarantula crocodile dolphin shark whale snail gorilla cheetah hippopotamus rhinoceros reindeer woodpecker
        peacock""",
    "food": """spaghetti pancake waffle pretzel avocado pineapple broccoli cucumber pickle lasagna burrito
        croissant bagel donut muffin cheesecake meatball sausage popcorn marshmallow omelette noodle dumpling
        pumpkin cabbage carrot potato tomato mango banana coconut walnut peanut almond cinnamon mustard ketchup
        mayonnaise biscuit sandwich sushi quiche oatmeal smoothie espresso pizza""",
    "household": """toaster umbrella mattress pillow blanket curtain doorbell lampshade teapot kettle blender
        microwave vacuum bathtub sofa armchair wardrobe mirror candle stapler calculator thermostat ladder bucket
        broom sponge spatula refrigerator dishwasher toothbrush hammock bookshelf postcard calendar notebook
        suitcase backpack wallet""",
    "object": """hammer screwdriver shovel wheelbarrow chainsaw flashlight magnet telescope microscope binoculars
        trampoline skateboard surfboard kite balloon trophy crayon paintbrush typewriter keyboard printer robot
        drone windmill elevator escalator parachute helmet anchor boomerang frisbee confetti glitter fireworks
        lollipop treasure""",
    "vehicle": """bicycle tractor submarine helicopter canoe sailboat tugboat ambulance limousine scooter unicycle
        bulldozer forklift gondola zeppelin spaceship rocket taxi minivan hovercraft""",
    "clothing": """sombrero tuxedo pajamas sweater mitten scarf necktie bowtie sandal sneaker raincoat overalls
        apron tiara monocle bathrobe kimono poncho beret fedora earmuffs slipper suspenders cardigan toga""",
    "place": """library laundromat bakery airport lighthouse igloo castle volcano museum casino courthouse
        greenhouse attic basement garage hospital aquarium stadium cathedral pyramid skyscraper tunnel bridge
        harbor cemetery vineyard orchard swamp desert glacier jungle island canyon waterfall cave meadow pond""",
    "person": """astronaut plumber dentist librarian lawyer accountant magician lifeguard pirate wizard vampire
        zombie ninja cowboy knight butler janitor barber sheriff juggler clown surgeon detective ventriloquist
        lumberjack shepherd goalkeeper babysitter grandmother landlord mayor senator""",
    "thing": """lawsuit mortgage invoice receipt passport diploma coupon voucher ticket password spreadsheet
        warranty horoscope podcast selfie voicemail hashtag emoji deadline wedding birthday karaoke yoga marathon""",
    "event": """tornado blizzard earthquake eclipse rainbow thunderstorm avalanche sunburn hiccup sneeze""",
    "music": """accordion bagpipes banjo trombone tuba ukulele xylophone harmonica violin cello saxophone
        tambourine piano drum kazoo flute trumpet bugle oboe""",
    "nature": """pebble boulder acorn pinecone cactus sunflower tulip dandelion mushroom coral iceberg meteor comet
        asteroid moon puddle snowman snowflake bonsai bamboo""",
    "gadget": """smartphone laptop router charger headphones webcam joystick thermometer stopwatch hourglass
        metronome jukebox""",
    "fantasy": """dinosaur fossil mummy ghost unicorn dragon yeti mermaid goblin genie""",
}
WORDS = [(w, group) for group, text in WORD_GROUPS.items() for w in text.split()]

# Characters a clean headline prompt may hold besides letters and digits.
HEADLINE_PUNCT = set(" .,'’‘?!:;-–—$%&/\"“”")


def norm(text: str) -> str:
    """Runs of whitespace (tabs, newlines, no-break spaces...) become one space; nothing else changes."""
    return " ".join(text.split())


def key(text: str) -> str:
    """Deduplication key: case- and whitespace-insensitive."""
    return "".join(text.split()).casefold()


def usable_text(text: str) -> bool:
    lo, hi = TEXT_LEN
    if not lo <= len(text) <= hi:
        return False
    # control / format characters (e.g. zero-width space) would be invisible in the TSV
    return not any(unicodedata.category(c) in ("Cc", "Cf", "Co", "Cs") for c in text)


def clean_headline(text: str) -> bool:
    """A headline fit to be a prompt: 20-120 characters, plain punctuation, balanced quotes, no media tags like
    '(photos)', no censored words ('f**k'), no glued colons ('a:b')."""
    lo, hi = HEADLINE_LEN
    if not lo <= len(text) <= hi or len(text.split()) < 4:
        return False
    if any(not (c.isalnum() or c in HEADLINE_PUNCT) for c in text):
        return False
    if text.count('"') % 2 or text.count("“") != text.count("”") or text.count("‘") > text.count("’"):
        return False
    if "--" in text or text[-1] in ":;,-–—/&" or text[0] in ".,:;!?-/":
        return False
    for i, c in enumerate(text):
        if c == ":" and (i == 0 or text[i - 1] == " " or (i + 1 < len(text) and text[i + 1] not in " 0123456789")):
            return False
    return True


def read_colbert(path: Path) -> tuple[list[str], list[str], dict]:
    """(jokes, headlines) in file order, normalised, usable and deduplicated; plus counts of what was dropped."""
    by_key: dict[str, tuple[str, set[int]]] = {}
    order: list[str] = []
    stats = {"rows": 0, "unusable": 0, "duplicate": 0, "both_labels": 0}
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        if not {"text", "humor"} <= set(reader.fieldnames or []):
            sys.exit(f"{path}: expected columns text, humor; header is {reader.fieldnames}")
        for row in reader:
            stats["rows"] += 1
            v = (row["humor"] or "").strip().lower()
            if v not in ("true", "false"):
                sys.exit(f"{path}:{reader.line_num}: humor must be True/False, got {row['humor']!r}")
            text = norm(row["text"] or "")
            if not usable_text(text):
                stats["unusable"] += 1
                continue
            k = key(text)
            if k in by_key:
                stats["duplicate"] += 1
                by_key[k][1].add(v == "true")
            else:
                by_key[k] = (text, {v == "true"})
                order.append(k)
    jokes, headlines = [], []
    for k in order:
        text, labels = by_key[k]
        if len(labels) > 1:
            stats["both_labels"] += 1
        elif True in labels:
            jokes.append(text)
        else:
            headlines.append(text)
    return jokes, headlines, stats


def check_words() -> None:
    words = [w for w, _ in WORDS]
    bad = [w for w in words if not (w.isascii() and w.isalpha() and w.islower() and len(w) >= 4)]
    dup = sorted({w for w in words if words.count(w) > 1})
    inside = sorted((a, b) for a in words for b in words if a != b and a in b)
    if bad or dup or inside:
        sys.exit(f"word list: bad {bad}, repeated {dup}, word inside another {inside}")


def word_pairs(rng: random.Random, n: int) -> list[tuple[str, str]]:
    """n pairs of words from different groups; no pair twice (either order), no word more than MAX_WORD_USES times."""
    group = dict(WORDS)
    uses = {w: 0 for w, _ in WORDS}
    pairs, seen = [], set()
    for _ in range(200 * n):
        if len(pairs) == n:
            break
        available = [w for w, _ in WORDS if uses[w] < MAX_WORD_USES]
        a, b = rng.sample(available, 2)
        if group[a] == group[b] or frozenset((a, b)) in seen:
            continue
        seen.add(frozenset((a, b)))
        uses[a] += 1
        uses[b] += 1
        pairs.append((a, b))
    if len(pairs) < n:
        sys.exit(f"could only make {len(pairs)} word pairs of {n}")
    return pairs


def write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    for row in rows:
        assert all("\t" not in v and "\n" not in v and "\r" not in v and v == v.strip() and v for v in row), row
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in [header] + rows:
            f.write("\t".join(row) + "\n")


def verify(out: Path, labeled_rows: list[list[str]], prompt_rows: list[list[str]]) -> None:
    """Read the files back and check what the README promises."""
    expected = (("labeled.tsv", 3, N_JOKES + N_NOT), ("prompts.tsv", 4, N_HEADLINE_PROMPTS + N_WORD_PROMPTS))
    for name, width, n in expected:
        lines = (out / name).read_bytes().decode("utf-8").split("\n")
        assert lines[-1] == "" and len(lines) == n + 2, (name, len(lines))
        assert all(len(line.split("\t")) == width for line in lines[:-1]), name
    labels = [r[1] for r in labeled_rows]
    assert labels.count("1") == N_JOKES and labels.count("0") == N_NOT
    keys = {key(r[2]) for r in labeled_rows}
    assert len(keys) == len(labeled_rows), "duplicate labeled text"
    heads = [r[3] for r in prompt_rows if r[3] != "-"]
    pairs = [(r[1], r[2]) for r in prompt_rows if r[1] != "-"]
    assert len(heads) == N_HEADLINE_PROMPTS and len({key(h) for h in heads}) == len(heads)
    assert not keys & {key(h) for h in heads}, "prompt headline also in labeled.tsv"
    assert len(pairs) == N_WORD_PROMPTS and len({frozenset(p) for p in pairs}) == len(pairs)
    flat = [w for p in pairs for w in p]
    assert all(a != b for a, b in pairs) and max(flat.count(w) for w in flat) <= MAX_WORD_USES
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    assert size < 1_000_000, f"data/demo is {size} bytes"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--colbert", type=Path, default=DEFAULT_COLBERT, help="ColBERT dev.csv (text, humor)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args(argv)
    check_words()

    jokes, headlines, stats = read_colbert(args.colbert)
    print(f"{args.colbert}: {stats['rows']} rows; dropped {stats['unusable']} unusable, {stats['duplicate']} "
          f"duplicates, {stats['both_labels']} texts with both labels; {len(jokes)} jokes, {len(headlines)} headlines")

    # separate streams, so that changing one part leaves the others as they are
    rng_labeled, rng_prompts, rng_words, rng_order = (random.Random(args.seed * 10 + i) for i in range(4))
    chosen_jokes = rng_labeled.sample(jokes, N_JOKES)
    chosen_not = rng_labeled.sample(headlines, N_NOT)
    labeled_rows = [["en", "1", t] for t in chosen_jokes] + [["en", "0", t] for t in chosen_not]
    rng_labeled.shuffle(labeled_rows)

    taken = {key(t) for t in chosen_jokes + chosen_not}
    pool = [h for h in headlines if key(h) not in taken and clean_headline(h)]
    print(f"{len(pool)} clean headlines left for prompts")
    prompt_heads = rng_prompts.sample(pool, N_HEADLINE_PROMPTS)
    pairs = word_pairs(rng_words, N_WORD_PROMPTS)

    kinds = ["headline"] * N_HEADLINE_PROMPTS + ["words"] * N_WORD_PROMPTS
    rng_order.shuffle(kinds)
    heads_iter, pairs_iter = iter(prompt_heads), iter(pairs)
    prompt_rows = []
    for i, kind in enumerate(kinds, 1):
        if kind == "headline":
            prompt_rows.append([f"en_d{i:04d}", "-", "-", next(heads_iter)])
        else:
            prompt_rows.append([f"en_d{i:04d}", *next(pairs_iter), "-"])

    args.out.mkdir(parents=True, exist_ok=True)
    write_tsv(args.out / "labeled.tsv", ["lang", "label", "text"], labeled_rows)
    write_tsv(args.out / "prompts.tsv", ["id", "word1", "word2", "headline"], prompt_rows)
    verify(args.out, labeled_rows, prompt_rows)
    print(f"wrote {args.out / 'labeled.tsv'} ({len(labeled_rows)} rows) and {args.out / 'prompts.tsv'} "
          f"({len(prompt_rows)} rows); checks passed")


if __name__ == "__main__":
    main()
