"""Free phrasing on the default (icons) model: does it draw what people type, and say what it cannot draw?

    python -m bench.icons_reading [--seeds 2] [--out bench/results/icons-reading.md]

1. Reading (text only): the trained reader's exact readings on free phrasings from each split of words and
   sentence forms (train/icons_phrasing.py).
2. Names: the name matcher on the icons' everyday names (assets/icons/icons.json "heldout", never in any
   training data), and on nouns the world lacks, which it should leave out.
3. Drawing: handwritten prompts (below; no template of the training data wrote them), each with the scene it
   asks for, drawn with understanding off and on, two seeds, judged by the world's finder (judge.py: each icon
   found in its place, the background). The rate is the share of pictures drawn right.
4. Outside the world: prompts that ask for something the world cannot draw; the share whose understood output
   names what was not drawn.
5. Speed: what understanding adds at batch 1, prompts in the world's words and free ones, against it off, the
   calls taking turns.
6. Bad input: what happens, and how long it takes.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from pipeline import Wordbrush
from pipeline.worlds.icons import judge as icons_eval
from pipeline.worlds.icons.catalogue import icons
from pipeline.worlds.icons.scenes import Scene
from train.icons_phrasing import other_nouns
from train.icons_understanding import evaluate_text


def S(kind, things, background=None, relation=None, size=None):  # noqa: N802 - a table's short constructor
    return Scene(kind, tuple(things), background, relation, size)


# Handwritten prompts: (prompt, the scene it asks for; background None: any)
PROMPTS = {
    "one thing": [
        ("hey there! could you please draw me a lion?", S("single", ["lion"])),
        ("I'd really love a picture of a penguin, thank you so much", S("single", ["penguin"])),
        ("umm maybe a pineapple", S("single", ["pineapple"])),
        ("Just a ghost. Nothing fancy.", S("single", ["ghost"])),
        ("would it be possible to get an umbrella?", S("single", ["umbrella"])),
        ("my daughter wants a unicorn, can you do that", S("single", ["unicorn"])),
        ("a tiny little snail please", S("single", ["snail"], size="small")),
        ("draw an absolutely enormous pumpkin", S("single", ["pumpkin"], size="big")),
        ("show me the helicopter", S("single", ["helicopter"])),
        ("Can I have one cactus?", S("single", ["cactus"])),
        ("i want to see a cute turtle", S("single", ["turtle"])),
        ("please, a single candle", S("single", ["candle"])),
    ],
    "everyday words": [
        ("a puppy please", S("single", ["dog"])),
        ("draw a kitty cat", S("single", ["cat"])),
        ("an automobile", S("single", ["car"])),
        ("could you draw a bunny for me?", S("single", ["rabbit"])),
        ("two piggies", S("count", ["pig", "pig"])),
        ("a jet", S("single", ["airplane"])),
        ("a little ducky", S("single", ["duck"], size="small")),
        ("a pup next to a kitten", S("pair", ["dog", "cat"])),
        ("a bike", S("single", ["bicycle"])),
        ("a cellphone", S("single", ["phone"])),
        ("one hen", S("single", ["chicken"])),
        ("a mobile phone on a pink background", S("single", ["phone"], "pink")),
        ("a burger", S("single", ["hamburger"])),
        ("a donut", S("single", ["doughnut"])),
    ],
    "relation": [
        ("a moon with a rocket above it", S("relation", ["rocket", "moon"], relation="above")),
        ("to the left of a tree stands a horse", S("relation", ["horse", "tree"], relation="left of")),
        ("a cat and a dog, the cat on the right", S("relation", ["cat", "dog"], relation="right of")),
        ("put the crown on top of the bear", S("relation", ["crown", "bear"], relation="above")),
        ("a frog sitting under an umbrella", S("relation", ["frog", "umbrella"], relation="below")),
        ("there's a car, and to its left a bus", S("relation", ["bus", "car"], relation="left of")),
        ("a cloud floating over a house", S("relation", ["cloud", "house"], relation="above")),
        ("beneath the sun there is a sunflower", S("relation", ["sunflower", "sun"], relation="below")),
        ("an owl perched on a pumpkin", S("relation", ["owl", "pumpkin"], relation="above")),
        ("a banana placed to the right of an apple", S("relation", ["banana", "red apple"], relation="right of")),
        ("draw a ship. put a whale below it.", S("relation", ["whale", "ship"], relation="below")),
        ("a key, and a padlock on its right side", S("relation", ["padlock", "key"], relation="right of")),
        ("the bee is hovering above the tulip", S("relation", ["bee", "tulip"], relation="above")),
        ("a guitar leaning to the left of a chair", S("relation", ["guitar", "chair"], relation="left of")),
    ],
    "counts": [
        ("a pair of owls, please", S("count", ["owl", "owl"])),
        ("3 ducks", S("count", ["duck", "duck", "duck"])),
        ("two cute frogs please", S("count", ["frog", "frog"])),
        ("a couple of strawberries", S("count", ["strawberry", "strawberry"])),
        ("three little pigs", S("count", ["pig", "pig", "pig"])),
        ("draw 2 rockets", S("count", ["rocket", "rocket"])),
        ("could you make three stars?", S("count", ["star", "star", "star"])),
        ("twin balloons", S("count", ["balloon", "balloon"])),
        ("a trio of tomatoes", S("count", ["tomato", "tomato", "tomato"])),
        ("I'd like two bells on a black background", S("count", ["bell", "bell"], "black")),
        ("a duo of cookies", S("count", ["cookie", "cookie"])),
        ("three of those snowflakes", S("count", ["snowflake", "snowflake", "snowflake"])),
    ],
    "backgrounds": [
        ("a fox against a navy backdrop", S("single", ["fox"], "dark blue")),
        ("a sailboat, with the background sky-blue", S("single", ["sailboat"], "light blue")),
        ("a snowman on a plain black background", S("single", ["snowman"], "black")),
        ("give me a tractor on cream", S("single", ["tractor"], "beige")),
        ("a heart on baby pink", S("single", ["heart"], "pink")),
        ("a pizza with a charcoal background", S("single", ["pizza"], "black")),
        ("background: forest green. a ladybug.", S("single", ["ladybug"], "dark green")),
        ("a lemon set against off-white", S("single", ["lemon"], "white")),
        ("an octopus on a gray background", S("single", ["octopus"], "grey")),
        ("a crab in front of a midnight blue wall", S("single", ["crab"], "dark blue")),
        ("two horses on pale blue", S("count", ["horse", "horse"], "light blue")),
        ("a dolphin, and make the background white", S("single", ["dolphin"], "white")),
        ("a house on a sand-coloured background", S("single", ["house"], "beige")),
        ("a whale on a slate grey background", S("single", ["whale"], "grey")),
    ],
}
# Prompts that ask for something the world cannot draw, and a word the note must name (None: any note)
OUTSIDE = [
    ("a frog on a yellow background", "yellow"),
    ("four apples", "apples"),
    ("a purple elephant", "purple"),
    ("a dragon", "dragon"),
    ("一只猫", None),
    ("seven ducks on pink", "ducks"),
    ("a cat, a dog, a frog and a fox", "fox"),
    ("a laptop next to a castle", "castle"),
    ("a green pig", "green"),
    ("a horse on an orange background", "orange"),
    ("a dozen eggs", "eggs"),
    ("a spaceship above a volcano", "volcano"),
    ("a blue banana", "blue"),
    ("a submarine", "submarine"),
    ("ten stars", "stars"),
    ("a cow on a turquoise background", "turquoise"),
    ("犬と猫", None),
    ("a red tiger", "red"),
    ("a violin beside a chair", "violin"),
    ("a bear, a cat, a dog and a duck", None),
]
BAD_INPUTS = {
    "keyboard mash": "asdf qwerty zxcv",
    "emoji only": "🐶🐱🍕",
    "5,000 words": " ".join(["a puppy beside a car"] * 1000),
    "another script": "一只猫在桌子下面",
    "lone surrogate": "a red \ud800 fox",
    "punctuation": "?!?!...,,,",
}


def reading_table(wb: Wordbrush) -> list[str]:
    scores = evaluate_text(wb.understanding.reader(), n=400)
    return ["| phrasing | exact reading |", "|---|---:|", *(f"| {k} | {v:.3f} |" for k, v in scores.items())]


def names_table(wb: Wordbrush) -> list[str]:
    matcher = wb.understanding.matcher
    everyday = [(w, icon.name) for icon in icons().values() for w in icon.heldout]
    lacking = list(other_nouns())
    lines = ["| words | n | top name right | drawn as that name | said (left out, or the nearest) |"]
    lines.append("|---|---:|---:|---:|---:|")
    for half, pairs in (("everyday, tuning half", everyday[0::2]), ("everyday, measuring half", everyday[1::2])):
        top = statistics.mean(matcher.scores(w)[0][0] == n for w, n in pairs)
        right = statistics.mean(matcher.match(w)[0] == n for w, n in pairs)
        lines.append(f"| {half} | {len(pairs)} | {top:.3f} | {right:.3f} | - |")
    for half, words in (("lacking, tuning half", lacking[0::2]), ("lacking, measuring half", lacking[1::2])):
        said = statistics.mean(name is None or not sure for name, sure in map(matcher.match, words))
        lines.append(f"| {half} | {len(words)} | - | - | {said:.3f} |")
    return lines


def drawn_right(scene: Scene, image, model) -> bool:
    verdict = icons_eval.judge(_with_background(scene), image, model)
    return verdict["icons"] and (scene.background is None or verdict["background"])


def _with_background(scene: Scene) -> Scene:
    return scene if scene.background else Scene(scene.kind, scene.icons, "white", scene.relation, scene.size)


def drawing_table(wb: Wordbrush, seeds: int) -> list[str]:
    model = icons_eval.classifier()
    lines = ["| what was asked | prompts | understanding off | understanding on |", "|---|---:|---:|---:|"]
    for category, items in PROMPTS.items():
        rates = {}
        for understand in (False, True):
            right = []
            for prompt, scene in items:
                result = wb.text_to_image([prompt] * seeds, seed=list(range(seeds)), understand=understand)
                right += [drawn_right(scene, image, model) for image in result.images]
            rates[understand] = statistics.mean(right)
        lines.append(f"| {category} | {len(items)} | {rates[False]:.3f} | {rates[True]:.3f} |")
    return lines


def outside_table(wb: Wordbrush) -> list[str]:
    said = []
    lines = ["| prompt | understood |", "|---|---|"]
    for prompt, word in OUTSIDE:
        u = wb.understand([prompt])[0]
        ok = bool(u.notes) and (word is None or any(word in n for n in u.notes))
        said.append(ok)
        lines.append(f"| {prompt} | {u.describe().replace(chr(10), '; ')} |")
    return [f"Named what was not drawn: {sum(said)} of {len(said)} ({statistics.mean(said):.2f})", "", *lines]


def speed_table(wb: Wordbrush, repeats: int) -> list[str]:
    """Batch 1, understanding off and on: prompts in the world's words, and free ones with words the name
    matcher has not seen before (the icons' everyday names, two a call)."""
    world = ["a frog next to a pizza", "three red apples on a pink background"]
    words = [w for icon in icons().values() for w in icon.heldout]
    free = [f"could you draw a {a} next to a {b}?" for a, b in zip(words[0::2], words[1::2])]
    times = {k: [] for k in ("world off", "world on", "free off", "free on")}
    for r in range(repeats):
        for kind, prompts in (("world", world), ("free", free)):
            prompt = prompts[r % len(prompts)]
            for understand in (False, True):
                wb.understanding.matcher.clear_cache()  # every word is new to the matcher
                wb.encoder.clear_cache()
                t = time.perf_counter()
                wb.text_to_image(prompt, seed=r, understand=understand)
                times[f"{kind} {'on' if understand else 'off'}"].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = [
        (label, med[f"{k} off"], med[f"{k} on"])
        for label, k in (("in the world's words", "world"), ("free, words new to the matcher", "free"))
    ]
    return [
        "| prompt | understanding off | on | added |",
        "|---|---:|---:|---:|",
        *(f"| {label} | {off:.3f} s | {on:.3f} s | {on - off:+.3f} s |" for label, off, on in rows),
    ]


def bad_input_table(wb: Wordbrush) -> list[str]:
    lines = ["| input | what happened | seconds |", "|---|---|---:|"]
    for name, prompt in BAD_INPUTS.items():
        t = time.perf_counter()
        try:
            result = wb.text_to_image(prompt, seed=0)
            what = f"drawn: {result.recipes[0].understood}"
        except ValueError as err:
            what = f"refused: {err}"
        lines.append(f"| {name} | {what} | {time.perf_counter() - t:.2f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="icons")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=16)
    ap.add_argument("--out", default="bench/results/icons-reading.md")
    ap.add_argument("--parts", default="reading,names,drawing,outside,speed,bad", help="which tables, comma-separated")
    args = ap.parse_args()
    torch.set_num_threads(2)
    wb = Wordbrush.load(args.model)
    wb.understanding.load_in_background().join()
    tables = {
        "reading": ("Reading (text only, 400 prompts a split)", lambda: reading_table(wb)),
        "names": ("Names", lambda: names_table(wb)),
        "drawing": (
            f"Drawing handwritten prompts ({args.seeds} seeds, the world's finder)",
            lambda: drawing_table(wb, args.seeds),
        ),
        "outside": ("Outside the world", lambda: outside_table(wb)),
        "speed": (
            f"Speed at batch 1 (median of {args.repeats}, calls taking turns)",
            lambda: speed_table(wb, args.repeats),
        ),
        "bad": ("Bad input", lambda: bad_input_table(wb)),
    }
    parts = [
        "# Free phrasing on the icons model",
        f"`python -m bench.icons_reading --parts {args.parts}` ({args.model}).",
    ]
    for name in args.parts.split(","):
        title, table = tables[name]
        parts += [f"## {title}", "\n".join(table())]
    report = "\n\n".join(parts) + "\n"
    print(report)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(report)


if __name__ == "__main__":
    main()
