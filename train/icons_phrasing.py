"""Free phrasings of icons-world scenes, with the answer the reader should give (pipeline/worlds/icons/reader.py):
a tag per word and the scene's frame. The icons reader's training data.

A scene (one to four things, each counted; a relation between the first two; a size; a background; colours said
of things) is written the way people write: any word order, relations in several sentence forms (the second thing
first, the relation fronted, said about "it", two clauses, verbs of sitting, floating, standing), counts in words,
digits and measure phrases, polite and chatty wrappers, filler adjectives. Every word list and sentence form is
split into a training part and a held-out part (`split_of`: one item in four held out), and the things come
from the world's names and from nouns the world does not have (so the reader tags a thing by its place in the
sentence, not by knowing the word). The icons' everyday names (assets/icons/icons.json "heldout") never appear:
they measure the name matcher.

    example = sample_phrased(random.Random(0))   # Phrased(words=[...], tags=[...], frame={...}, target=Reading)
"""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import ImageColor

from pipeline.worlds.icons.catalogue import BACKGROUNDS, COLOUR_WORDS, icons, plural
from pipeline.worlds.icons.reader import FRAME, TAGS, Reading, split_words

HELDOUT_SHARE = 4  # one item in four of each list is held out


def split_of(items, split: str) -> tuple:
    """The training part (`split="train"`) or the held-out part of a list; "all" for both."""
    items = tuple(items)
    if split == "all":
        return items
    return tuple(x for i, x in enumerate(items) if (i % HELDOUT_SHARE == HELDOUT_SHARE - 1) == (split == "heldout"))


OTHER_NOUNS = """dragon castle table lamp sofa piano violin drum tent mountain volcano bridge tower windmill lighthouse
kettle teapot spoon fork knife bottle cup bowl vase bucket ladder shovel broom basket backpack suitcase wallet
helmet glove sock shoe boot scarf jacket dress shirt tie ring necklace watch mirror pillow blanket rug curtain
window fence gate wheel tire engine submarine canoe kayak spaceship skateboard scooter wagon sled parachute kite
trumpet flute harp accordion microphone radio television printer keyboard tablet battery compass map globe
telescope microscope candlestick lantern torch sword shield bow arrow axe saw wrench screwdriver drill nail
screw brush comb toothbrush soap towel bathtub toilet sink oven fridge toaster blender pan pot plate jar box
envelope stamp coin banknote trophy medal flag statue fountain bench swing slide seesaw sandcastle igloo
pyramid skyscraper barn church tractor-trailer wolf deer moose goat sheep donkey llama kangaroo squirrel bat
raccoon otter beaver seal walrus flamingo parrot peacock swan goose eagle crow pigeon lobster shrimp jellyfish
starfish ant spider scorpion worm lizard dinosaur mango pear plum coconut onion garlic potato pepper cucumber
lettuce pumpkin-pie sandwich taco burrito sushi noodle dumpling pancake waffle muffin croissant bagel pie
candy cupcake yogurt soup salad steak sausage-roll tea juice soda wine teacup acorn leaf branch log rock
pebble shell feather bone skull crystal planet comet asteroid meteor galaxy volcano-island iceberg tornado
""".split()


def _phrases(text: str) -> tuple[str, ...]:
    """A list written as "one | two words | three"."""
    return tuple(p.strip() for p in text.split("|") if p.strip())


SMALL = _phrases("small | little | tiny | mini | teeny | wee | miniature | petite | smallish | itty-bitty | minuscule")
BIG = _phrases("big | large | huge | giant | enormous | massive | jumbo | gigantic | oversized | humongous | colossal")
ADJECTIVES = """cute happy lonely fluffy funny friendly sleepy shiny lovely nice sweet adorable cheerful grumpy silly
fresh ripe tasty delicious old new wooden fancy cool pretty brave wild sad lucky magic plain simple angry proud
lazy curious shy calm spooky""".split()
DETERMINERS = _phrases("a | a | a | one | the | a single | just one | one single | some kind of | my | a lone")
COUNT_WORDS = {
    2: _phrases("two | 2 | a pair of | a couple of | twin | a duo of | both | two of the"),
    3: _phrases("three | 3 | a trio of | a triple of | a set of three | three little | three of the"),
    4: _phrases("four | five | six | ten | 4 | 5 | 12 | a dozen | lots of | many | a bunch of | seven | 20 | eight"),
}
HUES = """red blue green yellow purple orange pink brown black white grey golden silver teal violet turquoise
maroon lime magenta navy beige crimson scarlet indigo cyan lavender""".split()

RELATION_PHRASES = {
    "left of": _phrases(
        "to the left of | left of | on the left of | on the left side of | at the left of | to the left side of |"
        "leftward of | just left of"
    ),
    "right of": _phrases(
        "to the right of | right of | on the right of | on the right side of | at the right of | "
        "to the right side of | rightward of | just right of"
    ),
    "above": _phrases(
        "above | over | on top of | atop | on | up above | high above | upon | higher than | on the top of | "
        "way above | right above"
    ),
    "below": _phrases(
        "below | under | underneath | beneath | lower than | down below | right under | at the foot of | "
        "way below | just beneath | directly below | under"
    ),
}
INVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
SIDEWAYS_VERBS = ("sitting", "standing", "placed", "waiting", "parked", "lying", "set", "positioned")
VERBS = {
    "left of": SIDEWAYS_VERBS,
    "right of": SIDEWAYS_VERBS,
    "above": ("sitting", "standing", "floating", "hovering", "resting", "perched", "flying", "balanced"),
    "below": ("hiding", "lying", "sitting", "standing", "hanging", "sleeping", "resting", "waiting"),
}
SIDE = {"left of": "left", "right of": "right", "above": "top", "below": "bottom"}
PRONOUN_PLACE = {  # where a thing is, said of "it"
    "left of": _phrases("to its left | on its left | at its left | on its left side | to the left of it | left of it"),
    "right of": _phrases(
        "to its right | on its right | at its right | on its right side | to the right of it | right of it"
    ),
    "above": _phrases("above it | on top of it | over it | on it | atop it | high above it"),
    "below": _phrases("below it | under it | beneath it | underneath it | down below it | lower than it"),
}

# Scene forms: {A} the first thing (a relation's subject), {B} the second, {C} and {D} the rest; {rel} and
# {Rel} (fronted) the relation, {verb} a verb of being somewhere, {it} the place of A said of "it" (B), {side}
# and {other} the relation's side words. No form says "{B} {inverse relation} {A}": it reads exactly as "{A}
# {rel} {B}" with the things swapped, and the two answers would teach the tags and the relation head opposite
# conventions (the first thing said in "X relation Y" is always the subject).
RELATION_FORMS = _phrases(
    "{A} {rel} {B} | {A} is {rel} {B} | {A} {verb} {rel} {B} | {B} with {A} {it} | {B} , and {A} {it} |"
    "{B} has {A} {it} | {Rel} {B} , {A} | {B} . {A} is {it} . | draw {B} , then put {A} {it} | {A} goes {rel} {B} |"
    "{A} on the {side} and {B} on the {other} | {B} , and {it} {A} | {Rel} {B} there is {A} | {A} , {verb} {rel} {B} |"
    "{B} with {A} {verb} {it} | there is {A} {rel} {B} | {A} on the {side} , {B} on the {other} | put {A} {rel} {B} |"
    "{A} sits {rel} {B} | {B} and {A} {it} | {Rel} {B} {verb} {A} | {B} ; {A} {it} | {B} , with {A} {verb} {it} |"
    "{A} , which is {rel} {B} | {Rel} {B} is {A} | first {B} , then {A} {it}"
)
PAIR_FORMS = _phrases(
    "{A} and {B} | {A} with {B} | {A} next to {B} | {A} beside {B} | {A} together with {B} | {A} alongside {B} |"
    "both {A} and {B} | {A} plus {B} | {A} & {B} | {A} , {B} | {A} near {B} | {A} accompanied by {B}"
)
MANY_FORMS = _phrases(
    "{A} , {B} and {C} | {A} , {B} , and {C} | {A} with {B} and {C} | {A} plus {B} plus {C} | {A} and {B} and {C} |"
    "{A} , {B} , {C}"
)
SINGLE_FORMS = _phrases(
    "{A} | {A} | {A} alone | just {A} | {A} , nothing else | only {A} | {A} by itself | {A} in the middle"
)
WRAPPERS = _phrases(
    "{x} | {x} | draw {x} | please draw {x} | could you draw {x} ? | can you make {x} for me ? | i'd like {x} |"
    "i want {x} | show me {x} | paint {x} | an image of {x} | a picture showing {x} | {x} please | hey , {x} ! |"
    "make me {x} , thanks | generate {x} | give me {x} | i would love to see {x} | how about {x} ? |"
    "let's see {x} | create {x} | yo , draw {x} | {x} , if you can | render {x} | imagine {x} | can i get {x} ? |"
    "would you mind drawing {x} ? | kindly draw {x} | an illustration of {x} | we need {x} |"
    "i need a picture of {x} please | hi ! could you paint {x} for my kid ? | {x} , thank you | ok so {x}"
)
BACKGROUND_AFTER = _phrases(
    "on a {c} background | against a {c} background | with a {c} background | on {c} | on a {c} backdrop |"
    "in front of a {c} wall | over a {c} background | set against {c} | on a plain {c} background |"
    "with {c} behind | , background {c} | , {c} background | on a field of {c} | against something {c} |"
    "; the background should be {c} | and make the background {c} | , all on {c} | over {c} |"
    "on a sheet of {c} paper | with the background in {c} | , the background {c} | on a {c} ground"
)
BACKGROUND_BEFORE = _phrases(
    "on a {c} background , | against {c} : | {c} background , | with a {c} backdrop , | on {c} , |"
    "background {c} , | background : {c} ."
)
NOISE = _phrases(
    "hello there | what can you do ? | thanks ! | how are you | asdf qwer zxcv | lorem ipsum dolor sit amet | test |"
    "? ? ? | ok | nothing | hmm , something nice | surprise me | jkl ; jkl ; | 123 456 | make it pretty |"
    "whatever you like | do your thing | no idea | xyzzy plugh | random stuff"
)


@functools.cache
def world_nouns() -> tuple[str, ...]:
    """The world's names and alternates (what captions call its icons)."""
    return tuple(dict.fromkeys(p for icon in icons().values() for p in (icon.name, *icon.alternates)))


@functools.cache
def other_nouns() -> tuple[str, ...]:
    """Nouns the world does not have, and none of its icons' everyday (held-out) names."""
    everyday = {w for icon in icons().values() for w in icon.heldout}
    taken = set(world_nouns()) | everyday
    return tuple(w.replace("-", " ") for w in dict.fromkeys(OTHER_NOUNS) if w.replace("-", " ") not in taken)


@functools.cache
def colour_names() -> tuple[str, ...]:
    """Colour names people use: the world's background words, the xkcd survey's names and the CSS names, less
    any that is one of the icons' everyday names."""
    xkcd = json.loads((Path(__file__).resolve().parents[1] / "assets" / "colours" / "xkcd.json").read_text())
    names = [*COLOUR_WORDS, *xkcd["colours"], *ImageColor.colormap]
    everyday = {w for icon in icons().values() for w in icon.heldout}  # "maize", "shamrock": never in training
    return tuple(dict.fromkeys(n for n in names if "/" not in n and len(n) < 24 and not set(n.split()) & everyday))


@dataclass(frozen=True)
class Phrased:
    words: list[str]
    tags: list[int]  # an index of TAGS per word
    frame: dict[str, int]  # an index of FRAME[slot] per slot the scene answers
    target: Reading

    @property
    def prompt(self) -> str:
        return " ".join(self.words)


def _piece(text: str, tag: str = "O") -> list[tuple[str, str]]:
    return [(w, tag) for w in split_words(text)]


def _thing(rng: random.Random, noun: str, count: int, tag: str, split: str, *, size: str | None, hue: str | None):
    """A thing's phrase as (word, tag) pairs: determiner or count, size, filler adjective, colour, noun."""
    out = []
    if count == 1:
        out += _piece(rng.choice(DETERMINERS))
    else:
        out += _piece(rng.choice(split_of(COUNT_WORDS[count], split) or COUNT_WORDS[count]))
    if size:
        out += _piece(rng.choice(split_of(SMALL if size == "small" else BIG, split)))
    if rng.random() < 0.2:
        out += _piece(rng.choice(split_of(ADJECTIVES, split)))
    if hue:
        out += _piece(hue, "HUE")
    name = noun if count == 1 else plural(noun)
    out += _piece(name, tag)
    if out[0][0] in ("a", "an"):
        out[0] = ("an" if out[1][0][0] in "aeiou" else "a", "O")
    return out


def _fill(form: str, parts: dict[str, list]) -> list[tuple[str, str]]:
    out = []
    for token in form.split():
        if token.startswith("{") and token.endswith("}"):
            out += parts[token[1:-1]]
        else:
            out += _piece(token)
    return out


def sample_scene_words(rng: random.Random, split: str) -> tuple[str, list[tuple[str, int]], str | None]:
    """kind ("things" or "relation"), (noun, count) per thing, relation."""
    n = rng.choices((1, 2, 3), weights=(4, 5, 1))[0]
    kind = "relation" if n == 2 and rng.random() < 0.6 else "things"
    nouns = []
    for _ in range(n + (n == 3 and rng.random() < 0.3)):
        pool = world_nouns() if rng.random() < 0.6 else split_of(other_nouns(), split)
        nouns.append(rng.choice(pool))
    counts = []
    for i in range(len(nouns)):
        if i >= 2 or (kind == "relation" and rng.random() < 0.8) or (n == 2 and rng.random() < 0.7):
            counts.append(1)
        else:
            counts.append(rng.choices((1, 2, 3, 4), weights=(4 if n == 1 else 3, 3, 3, 2))[0])
    relation = rng.choice(list(RELATION_PHRASES)) if kind == "relation" else None
    return kind, list(zip(nouns, counts)), relation


def phrase(rng: random.Random, *, words: str = "train", templates: str = "train") -> Phrased:
    """A random scene, phrased freely from the given splits of word lists and sentence forms."""
    kind, things, relation = sample_scene_words(rng, words)
    size = rng.choice((None, None, "small", "big")) if len(things) == 1 and things[0][1] == 1 else None
    hues = [rng.choice(split_of(HUES, words)) if rng.random() < 0.12 else None for _ in things]
    tags = ("T1", "T2", "T3", "T3")
    parts = {
        k: _thing(rng, noun, count, tag, words, size=size if i == 0 else None, hue=hue)
        for i, (k, (noun, count), tag, hue) in enumerate(zip("ABCD", things, tags, hues))
    }
    if kind == "relation":
        form = rng.choice(split_of(RELATION_FORMS, templates))
        if "{side}" in form or "{other}" in form:
            relation = rng.choice(list(RELATION_PHRASES))
        rel = rng.choice(split_of(RELATION_PHRASES[relation], words))
        parts |= {
            "rel": _piece(rel),
            "Rel": _piece(rel),
            "verb": _piece(rng.choice(split_of(VERBS[relation], words))),
            "it": _piece(rng.choice(split_of(PRONOUN_PLACE[relation], words))),
            "side": _piece(SIDE[relation]),
            "other": _piece(SIDE[INVERSE[relation]]),
        }
    elif len(things) == 1:
        form = rng.choice(split_of(SINGLE_FORMS, templates))
    elif len(things) == 2:
        form = rng.choice(split_of(PAIR_FORMS, templates))
    else:
        form = rng.choice(split_of(MANY_FORMS, templates))
        if len(things) == 4:
            form = (
                form.replace("{C}", "{C} , {D}", 1)
                if "and {C}" not in form
                else form.replace("and {C}", ", {C} and {D}")
            )
    body = _fill(form, parts)
    background = None
    if rng.random() < 0.6:
        pool = split_of(colour_names(), words) if rng.random() < 0.5 else tuple(BACKGROUNDS)
        background = rng.choice(pool).lower()
        if rng.random() < 0.75:
            bg = _fill(
                rng.choice(split_of(BACKGROUND_AFTER, templates)).replace("{c}", "{c}"), {"c": _piece(background, "BG")}
            )
            body = body + bg
        else:
            bg = _fill(rng.choice(split_of(BACKGROUND_BEFORE, templates)), {"c": _piece(background, "BG")})
            body = bg + body
    wrapped = _fill(rng.choice(split_of(WRAPPERS, templates)), {"x": body})
    wrapped = _case(rng, wrapped)
    frame = {"kind": FRAME["kind"].index(kind), "count1": COUNT_INDEX[things[0][1]]}
    if len(things) > 1:
        frame["count2"] = COUNT_INDEX[things[1][1]]
    if kind == "relation":
        frame["relation"] = FRAME["relation"].index(relation)
    if len(things) == 1:
        frame["size"] = FRAME["size"].index(size or "none")
    target_things = []
    for (_, count), k in zip(things, "ABCD"):
        target_things.append((" ".join(w.lower() for w, t in parts[k] if t.startswith("T")), count))
    target = Reading(
        kind,
        tuple(target_things),
        relation,
        size,
        " ".join(split_words(background)).lower() if background else None,
        tuple(" ".join(split_words(h)).lower() for h in hues if h),
    )
    return Phrased([w for w, _ in wrapped], [TAGS.index(t) for _, t in wrapped], frame, target)


COUNT_INDEX = {1: 0, 2: 1, 3: 2, 4: 3}


def _case(rng: random.Random, pieces: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """People's capitals and end marks."""
    r = rng.random()
    if r < 0.3:
        pieces = [(pieces[0][0].capitalize(), pieces[0][1]), *pieces[1:]]
    elif r < 0.35:
        pieces = [(w.upper(), t) for w, t in pieces]
    if rng.random() < 0.2 and pieces[-1][0] not in "?!.":
        pieces = [*pieces, (rng.choice(".!"), "O")]
    return pieces


def phrase_none(rng: random.Random) -> Phrased:
    """A prompt that names no scene: chatter, keyboard noise, numbers."""
    words = split_words(rng.choice(NOISE))
    return Phrased(words, [0] * len(words), {"kind": 0}, Reading("none"))


def sample_phrased(
    rng: random.Random, *, words: str = "train", templates: str = "train", none_share: float = 0.05
) -> Phrased:
    return phrase_none(rng) if rng.random() < none_share else phrase(rng, words=words, templates=templates)
