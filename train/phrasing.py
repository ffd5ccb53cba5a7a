"""Free phrasing of shapes-world scenes: what people type, paired with what it means.

The understanding model (pipeline/worlds/shapes/reader.py) learns from these pairs to read prompts such as
"could you paint a crimson disc resting on top of a navy cube?" as the scene they name. Everything is
split in two, so that held-out words and sentence forms measure generalization (bench/free_phrasing.py):

    words       colour, shape, style, count and relation words: a fixed quarter of each list (never the
                world's own word) is held out of training
    templates   sentence forms per kind, polite or chatty wrappers: a fixed quarter is held out

The target of a prompt is what it says, subject first: "below a mustard square is a lilac triangle" means
(purple triangle) below (yellow square). Prompts outside the world (other things, other languages, noise)
have the target None: the pipeline then draws the prompt as written.
"""

from __future__ import annotations

import dataclasses
import random
import string
from dataclasses import dataclass

from pipeline.worlds.shapes import scenes as world
from pipeline.worlds.shapes.reader import NUMBERS, Parsed, article

# Each world word first; the rest are other ways people say it.
COLOR_WORDS: dict[str, tuple[str, ...]] = {
    "red": (
        "red",
        "crimson",
        "scarlet",
        "maroon",
        "cherry",
        "ruby",
        "vermilion",
        "blood red",
        "brick red",
        "cardinal",
        "burgundy",
        "wine red",
        "rose red",
        "tomato red",
        "fire engine red",
        "carmine",
        "reddish",
        "cherry red",
        "ruby red",
        "strawberry",
        "lipstick red",
        "poppy red",
        "garnet",
        "deep red",
        "bright red",
        "dark red",
        "fire red",
        "candy red",
        "crimson red",
    ),
    "green": (
        "green",
        "emerald",
        "lime",
        "olive",
        "forest green",
        "jade",
        "kelly green",
        "grass green",
        "leaf green",
        "mint green",
        "sage",
        "pine green",
        "moss green",
        "bottle green",
        "greenish",
        "shamrock",
        "lime green",
        "olive green",
        "emerald green",
        "apple green",
        "hunter green",
        "dark green",
        "light green",
        "bright green",
        "neon green",
        "avocado",
        "pea green",
        "spring green",
        "fern green",
    ),
    "blue": (
        "blue",
        "navy",
        "cobalt",
        "azure",
        "sapphire",
        "royal blue",
        "sky blue",
        "cerulean",
        "denim",
        "ultramarine",
        "navy blue",
        "electric blue",
        "ocean blue",
        "bluish",
        "cornflower",
        "midnight blue",
        "light blue",
        "dark blue",
        "baby blue",
        "powder blue",
        "steel blue",
        "blueberry",
        "cobalt blue",
        "sapphire blue",
        "marine blue",
        "deep blue",
        "bright blue",
        "true blue",
    ),
    "yellow": (
        "yellow",
        "gold",
        "golden",
        "lemon",
        "mustard",
        "canary",
        "saffron",
        "butter yellow",
        "sunflower",
        "banana yellow",
        "lemon yellow",
        "yellowish",
        "sunny yellow",
        "dandelion",
        "honey",
        "corn yellow",
        "golden yellow",
        "bright yellow",
        "light yellow",
        "pale yellow",
        "school bus yellow",
        "chick yellow",
        "sunshine yellow",
        "daffodil",
        "buttercup",
        "citrine",
        "straw yellow",
        "canary yellow",
    ),
    "purple": (
        "purple",
        "violet",
        "lilac",
        "lavender",
        "plum",
        "mauve",
        "amethyst",
        "grape",
        "orchid",
        "eggplant",
        "purplish",
        "royal purple",
        "aubergine",
        "heather",
        "mulberry",
        "periwinkle purple",
        "light purple",
        "dark purple",
        "deep purple",
        "pale purple",
        "magenta",
        "boysenberry",
        "iris",
        "byzantium",
        "violet purple",
        "lavender purple",
        "grape purple",
        "plum purple",
    ),
    "orange": (
        "orange",
        "tangerine",
        "apricot",
        "pumpkin",
        "amber",
        "burnt orange",
        "carrot orange",
        "marigold",
        "orangish",
        "mandarin",
        "copper",
        "papaya",
        "rust orange",
        "bright orange",
        "cantaloupe",
        "dark orange",
        "light orange",
        "ginger",
        "persimmon",
        "clementine",
        "sunset orange",
        "safety orange",
        "tiger orange",
        "flame orange",
        "tangerine orange",
        "pumpkin orange",
        "deep orange",
    ),
    "white": (
        "white",
        "snow white",
        "ivory",
        "pearl",
        "milky",
        "chalk white",
        "alabaster",
        "snowy",
        "cream",
        "bone white",
        "off white",
        "paper white",
        "whitish",
        "porcelain",
        "frost white",
        "linen",
        "pure white",
        "bright white",
        "ghost white",
        "eggshell",
        "vanilla",
        "coconut white",
        "cotton white",
        "milk white",
        "lily white",
        "ivory white",
        "pearl white",
        "cloud white",
    ),
    "black": (
        "black",
        "charcoal",
        "jet black",
        "ebony",
        "onyx",
        "inky",
        "coal black",
        "pitch black",
        "obsidian",
        "raven",
        "sable",
        "midnight black",
        "soot black",
        "jet",
        "licorice",
        "blackish",
        "pure black",
        "deep black",
        "ink black",
        "night black",
        "shadow black",
        "tar black",
        "crow black",
        "carbon black",
        "oil black",
        "ebony black",
        "onyx black",
        "dark black",
    ),
}
SHAPE_WORDS: dict[str, tuple[tuple[str, str], ...]] = {  # (singular, plural)
    "circle": (
        ("circle", "circles"),
        ("disc", "discs"),
        ("disk", "disks"),
        ("dot", "dots"),
        ("ball", "balls"),
        ("sphere", "spheres"),
        ("orb", "orbs"),
        ("round shape", "round shapes"),
        ("ring", "rings"),
        ("coin", "coins"),
        ("round blob", "round blobs"),
        ("circular shape", "circular shapes"),
        ("bubble", "bubbles"),
        ("spot", "spots"),
        ("round", "rounds"),
        ("marble", "marbles"),
        ("button", "buttons"),
        ("polka dot", "polka dots"),
        ("blob", "blobs"),
        ("circular thing", "circular things"),
        ("round thing", "round things"),
        ("medallion", "medallions"),
        ("wheel", "wheels"),
        ("oval", "ovals"),
        ("round dot", "round dots"),
    ),
    "square": (
        ("square", "squares"),
        ("cube", "cubes"),
        ("box", "boxes"),
        ("block", "blocks"),
        ("tile", "tiles"),
        ("quadrilateral", "quadrilaterals"),
        ("square shape", "square shapes"),
        ("rectangle", "rectangles"),
        ("brick", "bricks"),
        ("crate", "crates"),
        ("four-sided shape", "four-sided shapes"),
        ("cuboid", "cuboids"),
        ("quad", "quads"),
        ("checker", "checkers"),
        ("slab", "slabs"),
        ("panel", "panels"),
        ("cubic shape", "cubic shapes"),
        ("square block", "square blocks"),
        ("boxy shape", "boxy shapes"),
        ("quadrangle", "quadrangles"),
        ("square thing", "square things"),
        ("four-cornered shape", "four-cornered shapes"),
        ("dice", "dice"),
        ("plaque", "plaques"),
    ),
    "triangle": (
        ("triangle", "triangles"),
        ("pyramid", "pyramids"),
        ("wedge", "wedges"),
        ("three-sided shape", "three-sided shapes"),
        ("triangular shape", "triangular shapes"),
        ("cone", "cones"),
        ("arrowhead", "arrowheads"),
        ("tent shape", "tent shapes"),
        ("delta", "deltas"),
        ("trigon", "trigons"),
        ("pointy shape", "pointy shapes"),
        ("tri", "tris"),
        ("triangular thing", "triangular things"),
        ("three-cornered shape", "three-cornered shapes"),
        ("tent", "tents"),
        ("prism", "prisms"),
        ("peak", "peaks"),
        ("spike", "spikes"),
        ("triangular block", "triangular blocks"),
        ("shark fin", "shark fins"),
        ("yield sign shape", "yield sign shapes"),
        ("pointed shape", "pointed shapes"),
    ),
    "star": (
        ("star", "stars"),
        ("five-pointed star", "five-pointed stars"),
        ("starburst", "starbursts"),
        ("pentagram", "pentagrams"),
        ("star shape", "star shapes"),
        ("twinkle star", "twinkle stars"),
        ("starfish shape", "starfish shapes"),
        ("sheriff star", "sheriff stars"),
    ),
}
STYLE_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # (adjectives, phrases after the object)
    "flat": (
        ("flat", "solid", "filled", "filled-in", "plain", "solid-colored", "block-colored"),
        ("in flat style", "filled in solid", "with a solid fill", "flat shaded", "in a flat look"),
    ),
    "outline": (
        ("outlined", "hollow", "unfilled", "line-drawn", "wireframe", "empty", "contour"),
        (
            "in outline style",
            "drawn as an outline",
            "as just an outline",
            "only the outline",
            "with no fill",
            "as a line drawing",
            "in outline only",
        ),
    ),
    "striped": (
        ("striped", "stripy", "banded", "pinstriped", "zebra-striped", "stripey", "lined"),
        (
            "with stripes",
            "in striped style",
            "with horizontal stripes",
            "covered in stripes",
            "with bands across it",
            "in stripes",
            "with a striped pattern",
        ),
    ),
    "soft": (
        ("soft", "blurry", "fuzzy", "blurred", "hazy", "misty", "smudgy"),
        (
            "with soft edges",
            "in soft style",
            "out of focus",
            "slightly blurred",
            "with fuzzy edges",
            "all soft and blurry",
            "with a soft glow",
        ),
    ),
}
RELATION_WORDS: dict[str, tuple[str, ...]] = {  # subject RELATION object
    "left of": (
        "to the left of",
        "left of",
        "on the left of",
        "on the left side of",
        "to the west of",
        "just left of",
        "placed left of",
        "sitting to the left of",
        "leftward of",
        "at the left of",
        "positioned to the left of",
        "off to the left of",
        "on the left-hand side of",
        "west of",
        "to the left side of",
        "left side of",
        "on the left hand side of",
        "leftwards of",
        "beside and left of",
        "a bit to the left of",
        "further left than",
        "to the left-hand side of",
    ),
    "right of": (
        "to the right of",
        "right of",
        "on the right of",
        "on the right side of",
        "to the east of",
        "just right of",
        "placed right of",
        "sitting to the right of",
        "rightward of",
        "at the right of",
        "positioned to the right of",
        "off to the right of",
        "on the right-hand side of",
        "east of",
        "to the right side of",
        "right side of",
        "on the right hand side of",
        "rightwards of",
        "beside and right of",
        "a bit to the right of",
        "further right than",
        "to the right-hand side of",
    ),
    "above": (
        "above",
        "over",
        "on top of",
        "atop",
        "higher than",
        "resting on top of",
        "sitting above",
        "hovering over",
        "directly above",
        "floating above",
        "stacked on",
        "up above",
        "perched on",
        "upon",
        "over the top of",
        "sitting on",
        "resting on",
        "standing on",
        "balanced on",
        "hovering above",
        "higher up than",
        "suspended above",
    ),
    "below": (
        "below",
        "under",
        "beneath",
        "underneath",
        "lower than",
        "sitting under",
        "resting below",
        "directly below",
        "down below",
        "at the foot of",
        "hanging under",
        "tucked under",
        "supporting",
        "underneath and touching",
        "right under",
        "just below",
        "hanging below",
        "down under",
        "sitting beneath",
        "lower down than",
        "propping up",
        "holding up",
    ),
}
# "Below B is A": the relation said first, as a fronted phrase.
FRONTED: dict[str, tuple[str, ...]] = {
    "left of": ("to the left of", "left of", "on the left of", "west of"),
    "right of": ("to the right of", "right of", "on the right of", "east of"),
    "above": ("above", "over", "on top of", "resting on", "sitting on top of", "atop"),
    "below": ("below", "under", "beneath", "underneath", "resting below", "sitting under"),
}
COUNT_WORDS: dict[int, tuple[str, ...]] = {  # before a plural: "{w} red circles"
    2: (
        "two",
        "2",
        "a pair of",
        "a couple of",
        "twin",
        "a duo of",
        "two matching",
        "double",
        "a set of two",
        "exactly two",
        "2x",
        "two identical",
        "a brace of",
        "2 identical",
        "a twosome of",
        "doubled",
        "two little",
    ),
    3: (
        "three",
        "3",
        "a trio of",
        "a triple of",
        "a set of three",
        "three matching",
        "triple",
        "a group of three",
        "exactly three",
        "3x",
        "a threesome of",
        "a triad of",
        "three identical",
        "a triplet of",
        "3 identical",
        "a set of 3",
        "three little",
    ),
    4: (
        "four",
        "4",
        "a quartet of",
        "a set of four",
        "four matching",
        "a group of four",
        "exactly four",
        "quadruple",
        "4x",
        "a foursome of",
        "a quad of",
        "a family of four",
        "four identical",
        "a quadruplet of",
        "4 identical",
        "a set of 4",
        "four little",
    ),
}
FILLERS = (
    "small",
    "big",
    "large",
    "little",
    "tiny",
    "nice",
    "simple",
    "bright",
    "cute",
    "lovely",
    "neat",
    "medium-sized",
    "huge",
    "single",
    "lone",
    "clean",
    "pretty",
    "bold",
    "sharp",
    "minimal",
)

NOUN_FORMS = (  # one object; {c} colour, {s} shape, {f} filler adjective
    "{c} {s}",
    "{f} {c} {s}",
    "{c}-colored {s}",
    "{s} in {c}",
    "{s} that is {c}",
    "{c} colored {s}",
    "{c}-coloured {s}",
    "{s}, {c}",
    "{s} colored {c}",
    "{f} {s} in {c}",
    "{c} {f} {s}",
    "{s} painted {c}",
)
TEMPLATES: dict[str, tuple[str, ...]] = {  # {A} {B}: noun phrases with article; {a} {b} without; {R} relation
    "single": (
        "{A}",
        "{A} on its own",
        "{A} by itself",
        "only {A}",
        "just {A}",
        "one {a}",
        "{A}, nothing else",
        "an image with {A}",
        "a drawing of {A}",
        "a picture containing {A}",
        "{A} in the middle",
        "{A} alone",
        "a lone {a}",
        "{A} centered",
        "one single {a}",
        "{A} somewhere in the frame",
        "a scene with {A}",
        "{A} and nothing more",
        "{A} floating in space",
        "a single {a}, please",
    ),
    "pair": (
        "{A} and {B}",
        "{A} plus {B}",
        "{A} alongside {B}",
        "{A} beside {B}",
        "{A}, {B}",
        "{A} along with {B}",
        "{A} accompanied by {B}",
        "both {A} and {B}",
        "{A} & {B}",
        "{A} near {B}",
        "{A} together with {B}",
        "two shapes: {A} and {B}",
        "{A} paired with {B}",
        "{A} as well as {B}",
        "{A} next to {B}",
        "{A} and also {B}",
        "{A} with {B} nearby",
        "one {a} and one {b}",
        "{A}, and {B} too",
        "{A} keeping company with {B}",
        "two things: {A} and {B}",
        "{A} and {B}, both of them",
        "a pair of shapes: {A} and {B}",
        "two different shapes, {A} and {B}",
        "both of these: {A} plus {B}",
    ),
    "relation": (
        "{A} {R} {B}",
        "{A} is {R} {B}",
        "{A} placed {R} {B}",
        "there is {A} {R} {B}",
        "{A} sits {R} {B}",
        "{B} with {A} {R} it",
        "{B} that has {A} {R} it",
        "{F} {B} is {A}",
        "{F} {B} there is {A}",
        "{A}, {R} {B}",
        "{A} located {R} {B}",
        "{A} which is {R} {B}",
        "{A} positioned {R} {B}",
        "{F} {B}, {A}",
        "{A} that is {R} {B}",
        "{B}, with {A} {R} it",
        "{A} set {R} {B}",
        "{A} appearing {R} {B}",
        "{B} and {A} {R} it",
        "{A} shown {R} {B}",
    ),
    "count": (
        "{N} {P}",
        "{N} {P} in a row",
        "{N} {P} scattered around",
        "{N} identical {P}",
        "{N} of the same {a}",
        "{P}, {N} of them",
        "{N} {P} together",
        "some {P}, {N} in total",
        "{N} {P} spread out",
        "{N} {P} side by side",
        "a bunch of {P}, {N} exactly",
        "{N} {P} and nothing else",
        "{A} and another one",
        "{N} copies of {A}",
        "{A}, times {N}",
        "{N} {P} in a group",
    ),
}
WRAPPERS = (  # the whole request around the description: {x}
    "{x}",
    "please paint {x}",
    "please draw {x}",
    "could you draw {x}?",
    "can you make {x}",
    "i'd like {x}",
    "i would love {x}",
    "generate {x}",
    "render {x}",
    "make me {x}",
    "give me {x}",
    "show {x}",
    "create an image of {x}",
    "paint {x}",
    "sketch {x}",
    "hey, draw {x}",
    "i need {x}",
    "how about {x}?",
    "{x} please",
    "{x}, thanks",
    "{x}, thank you!",
    "{x}!",
    "{x}.",
    "an illustration of {x}",
    "a photo of {x}",
    "could you please paint {x} for me",
    "show me {x}",
    "draw me {x}, please",
    "i want to see {x}",
    "picture {x}",
    "let's have {x}",
    "{x} on a plain background",
    "make {x}",
    "kindly render {x}",
    "would you draw {x}?",
    "an image of {x} please",
    "yo, {x}",
    "{x} :)",
    "a simple drawing: {x}",
    "imagine {x}",
)
# Prompts outside the world: things it has no words for, other languages, noise.
OTHER_THINGS = (
    "cat",
    "dog",
    "car",
    "house",
    "tree",
    "flower",
    "mountain",
    "person",
    "bird",
    "boat",
    "apple",
    "robot",
    "castle",
    "dragon",
    "horse",
    "chair",
    "guitar",
    "cloud",
    "bicycle",
    "lamp",
    "fish",
    "book",
    "rocket",
    "banana",
    "teapot",
    "lighthouse",
    "forest",
    "city skyline",
    "sunset",
    "portrait",
    "table",
    "sofa",
    "train",
    "airplane",
    "computer",
    "phone",
    "shoe",
    "sock",
    "bottle",
    "cup",
    "spoon",
    "pizza",
    "cake",
    "sandwich",
    "elephant",
    "lion",
    "tiger",
    "frog",
    "snake",
    "bee",
    "butterfly",
    "spider",
    "whale",
    "shark",
    "penguin",
    "owl",
    "rabbit",
    "mouse",
    "bridge",
    "road",
    "river",
    "lake",
    "beach",
    "ocean",
    "desert",
    "volcano",
    "moon",
    "planet",
    "rainbow",
    "snowman",
    "clock",
    "key",
    "door",
    "window",
    "hammer",
    "violin",
    "piano",
    "camera",
    "television",
    "bed",
    "mug",
    "pencil",
    "crown",
    "sword",
    "shield",
    "heart",
    "hexagon",
    "pentagon",
    "octagon",
    "line",
    "arrow",
    "cross",
    "spiral",
    "face",
    "hand",
    "tree house",
    "truck",
    "bus",
    "kite",
    "balloon",
    "umbrella",
    "hat",
    "glove",
    "candle",
    "lamp post",
    "mushroom",
    "leaf",
    "rose",
    "tulip",
    "carrot",
    "egg",
    "cookie",
    "donut",
    "burger",
    "ice cream",
)
OTHER_LANGUAGE = (
    "un cercle rouge",
    "ein blaues Quadrat",
    "un triángulo verde",
    "due cerchi gialli",
    "un carré noir à gauche d'un cercle blanc",
    "zwei rote Kreise",
    "赤い丸",
    "красный круг",
    "一个蓝色的正方形",
    "um quadrado azul",
    "een rode cirkel",
    "dreieck über einem kreis",
    "cercle bleu",
    "círculo rojo y cuadrado azul",
    "Dreieck",
    "quadrato viola",
)
EMOJI = "🔴🟦🔺⭐🐱🍕🚀🌙😀🎨🌈💜🟢⬛⚪🟧"
STAR_SHARE = 0.04  # scenes whose objects become stars
HELDOUT_SHARE = 4  # one item in four of each list is held out (never a world word)


def split_of(items: tuple, split: str) -> tuple:
    """The items of `split` ("train" or "heldout"): every fourth item, from the fourth, is held out (so the
    first, the world's own word, is always train)."""
    return tuple(x for i, x in enumerate(items) if (i % HELDOUT_SHARE == HELDOUT_SHARE - 1) == (split == "heldout"))


@dataclass(frozen=True)
class Phrased:
    prompt: str
    target: Parsed | None  # None: outside the world, drawn as written


def _noun(rng: random.Random, color: str, shape: str, split: str, *, article_: bool) -> str:
    c = rng.choice(split_of(COLOR_WORDS[color], split))
    s = rng.choice(split_of(SHAPE_WORDS[shape], split))[0]
    form = rng.choice(split_of(NOUN_FORMS, split)) if rng.random() < 0.5 else NOUN_FORMS[0]
    text = form.format(c=c, s=s, f=rng.choice(FILLERS))
    return f"{article(text)} {text}" if article_ else text


def _style_text(rng: random.Random, style: str, split: str, explicit: bool) -> tuple[str, str]:
    """(adjective, trailing phrase) saying `style`; flat usually goes unsaid."""
    if style == "flat" and not explicit:
        return "", ""
    adjs, phrases = STYLE_WORDS[style]
    if rng.random() < 0.5:
        return rng.choice(split_of(adjs, split)), ""
    return "", " " + rng.choice(split_of(phrases, split))


def phrase_scene(scene: world.Scene, rng: random.Random, *, words: str = "train", templates: str = "train") -> Phrased:
    """A free-phrased prompt for `scene` from the given word and template splits, with its target."""
    kind = scene.kind
    if kind == "count" and len(scene.objects) == 2 and rng.random() < 0.15:
        template = "{A} and {A2}"  # the same object twice is a count
    else:
        template = rng.choice(split_of(TEMPLATES[kind], templates))
    adj, tail = _style_text(rng, scene.style, words, explicit=rng.random() < 0.15)
    a, b = scene.objects[0], scene.objects[-1]
    relation = scene.relation

    def noun(o: world.Obj, art: bool) -> str:
        text = _noun(rng, o.color, o.shape, words, article_=False)
        text = f"{adj} {text}".strip()
        return f"{article(text)} {text}" if art else text

    n = len(scene.objects)
    count_word = rng.choice(split_of(COUNT_WORDS[n], words)) if kind == "count" else ""
    c = rng.choice(split_of(COLOR_WORDS[a.color], words))
    s_plural = rng.choice(split_of(SHAPE_WORDS[a.shape], words))[1]
    fields = {
        "A": noun(a, True),
        "a": noun(a, False),
        "B": noun(b, True),
        "b": noun(b, False),
        "A2": noun(a, True),
        "N": count_word or str(n),
        "P": f"{adj} {c} {s_plural}".strip(),
        "R": rng.choice(split_of(RELATION_WORDS[relation], words)) if relation else "",
        "F": rng.choice(split_of(FRONTED[relation], words)).capitalize() if relation else "",
    }
    if "{A} and another one" == template or "{A} and {A2}" == template:
        if n != 2:
            template = "{N} {P}"
    if kind == "count" and template in ("{N} copies of {A}", "{A}, times {N}"):
        fields["N"] = rng.choice((NUMBERS[n - 2], str(n)))  # "a pair of copies" does not read
    text = template.format(**fields) + tail
    wrapper = rng.choice(split_of(WRAPPERS, templates)) if rng.random() < 0.6 else "{x}"
    text = _case(rng, wrapper.format(x=text))
    objects = tuple((o.color, o.shape) for o in scene.objects)
    return Phrased(text, Parsed(kind, objects, relation, scene.style))


def _case(rng: random.Random, text: str) -> str:
    r = rng.random()
    if r < 0.25:
        return text[:1].upper() + text[1:]
    if r < 0.3:
        return text.upper()
    return text


def phrase_other(rng: random.Random, *, split: str = "train") -> Phrased:
    """A prompt the world cannot draw: other things, another language, emoji, noise or too many objects."""
    r = rng.random()
    if r < 0.1:  # a style with no content (style transfer describes the image for these)
        adjs, phrases = STYLE_WORDS[rng.choice(list(STYLE_WORDS))]
        style = rng.choice(split_of(phrases, split)) if rng.random() < 0.5 else rng.choice(split_of(adjs, split))
        text = rng.choice(("{s}", "make it {s}", "{s} please", "redraw it {s}", "the same but {s}", "turn it {s}"))
        text = text.format(s=style)
    elif r < 0.35:
        thing = rng.choice(split_of(OTHER_THINGS, split))
        color = rng.choice(list(COLOR_WORDS))
        forms = (
            f"a {thing}",
            f"a {color} {thing}",
            f"{article(thing)} {thing} on a hill",
            f"a {color} circle next to a {thing}",
            f"a {thing} above a blue square",
            f"two {thing}s",
            f"a photo of a {thing} at night",
            f"a {thing} in the style of van gogh",
        )
        text = rng.choice(forms)
    elif r < 0.5:
        text = rng.choice(split_of(OTHER_LANGUAGE, split))
    elif r < 0.6:
        text = "".join(rng.choice(EMOJI) for _ in range(rng.randint(1, 6)))
    elif r < 0.8:
        words = [
            "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 8)))
            for _ in range(rng.randint(1, 5))
        ]
        text = " ".join(words)
    else:  # more objects than the world draws
        n = rng.choice(("five", "six", "seven", "ten", "twenty", "5", "8", "a dozen", "many", "lots of"))
        color, shape = rng.choice(list(COLOR_WORDS)), rng.choice(list(SHAPE_WORDS))
        text = f"{n} {color} {shape}s"
    wrapper = rng.choice(split_of(WRAPPERS, split)) if rng.random() < 0.3 else "{x}"
    return Phrased(_case(rng, wrapper.format(x=text)), None)


def sample_phrased(
    rng: random.Random,
    *,
    words: str = "train",
    templates: str = "train",
    combos: str = "train",
    other_share: float = 0.1,
    kind: str | None = None,
) -> Phrased:
    """One free-phrased prompt: a world scene (of `kind`, or any) or, `other_share` of the time, none."""
    if kind is None and rng.random() < other_share:
        return phrase_other(rng, split=templates)
    scene = world.sample_split_scene(rng, split=combos, kind=kind)
    if rng.random() < STAR_SHARE:  # the LoRA demo's shape: understood too, though the base model never drew it
        scene = dataclasses.replace(scene, objects=tuple(world.Obj(o.color, "star") for o in scene.objects))
    return phrase_scene(scene, rng, words=words, templates=templates)
