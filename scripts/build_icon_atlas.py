"""Build the icons world's sprite atlas (assets/icons/) from Noto Color Emoji and CLDR's English annotations.

    apt-get download fonts-noto-color-emoji unicode-cldr-core     # Debian bookworm: 2.042, CLDR 41
    for deb in *.deb; do dpkg -x "$deb" debs; done                 # unpacked, no root install needed
    python -m scripts.build_icon_atlas --root debs

Each icon is rendered with Pillow at the font's only bitmap size (109 px, about 136 x 128), cropped to its
alpha, centred on a square and downscaled with LANCZOS to SPRITE px. The atlas is one RGBA PNG (a grid of
sprites, in ICONS order) and icons.json: per icon its name, category, alternate names (CLDR keywords that
name this icon and no other, minus the held-out names) and held-out names (everyday synonyms that no
training caption may use: they measure what the language model knows). The font is under the SIL Open Font
License 1.1 (assets/icons/LICENSE-OFL.txt); CLDR data under the Unicode License.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "assets" / "icons"
SPRITE = 64  # atlas sprite side in pixels; the world renders icons at 16-48 px from it
FONT = "usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
ANNOTATIONS = "usr/share/unicode/cldr/common/annotations/en.xml"
LICENSE = "usr/share/doc/fonts-noto-color-emoji/copyright"

# (emoji, name in captions, category, held-out names). Chosen to look different from one another at 24 px
# and to have a plain everyday name; the held-out names are synonyms a person would use.
ICONS: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("🐶", "dog", "animal", ("puppy", "doggy", "hound")),
    ("🐱", "cat", "animal", ("kitten", "kitty")),
    ("🐭", "mouse", "animal", ()),
    ("🐰", "rabbit", "animal", ("bunny",)),
    ("🦊", "fox", "animal", ()),
    ("🐻", "bear", "animal", ()),
    ("🐼", "panda", "animal", ()),
    ("🐨", "koala", "animal", ()),
    ("🐯", "tiger", "animal", ()),
    ("🦁", "lion", "animal", ()),
    ("🐮", "cow", "animal", ("cattle",)),
    ("🐷", "pig", "animal", ("piggy", "hog", "swine")),
    ("🐸", "frog", "animal", ("toad",)),
    ("🐵", "monkey", "animal", ()),
    ("🐔", "chicken", "animal", ("hen",)),
    ("🐧", "penguin", "animal", ()),
    ("🐦", "bird", "animal", ("birdie",)),
    ("🦆", "duck", "animal", ("duckling",)),
    ("🦉", "owl", "animal", ()),
    ("🐴", "horse", "animal", ("pony", "stallion")),
    ("🦄", "unicorn", "animal", ()),
    ("🐝", "bee", "animal", ("bumblebee",)),
    ("🐛", "caterpillar", "animal", ()),
    ("🦋", "butterfly", "animal", ()),
    ("🐌", "snail", "animal", ()),
    ("🐞", "ladybug", "animal", ("ladybird",)),
    ("🐢", "turtle", "animal", ("tortoise",)),
    ("🐍", "snake", "animal", ("serpent",)),
    ("🐙", "octopus", "animal", ()),
    ("🦀", "crab", "animal", ()),
    ("🐠", "tropical fish", "animal", ()),
    ("🐟", "fish", "animal", ()),
    ("🐬", "dolphin", "animal", ("porpoise",)),
    ("🐳", "whale", "animal", ()),
    ("🦈", "shark", "animal", ()),
    ("🐘", "elephant", "animal", ()),
    ("🦒", "giraffe", "animal", ()),
    ("🐪", "camel", "animal", ("dromedary",)),
    ("🦓", "zebra", "animal", ()),
    ("🐊", "crocodile", "animal", ("alligator",)),
    ("🦔", "hedgehog", "animal", ()),
    ("🍎", "red apple", "food", ()),
    ("🍏", "green apple", "food", ()),
    ("🍌", "banana", "food", ()),
    ("🍇", "grapes", "food", ()),
    ("🍓", "strawberry", "food", ()),
    ("🍉", "watermelon", "food", ()),
    ("🍊", "tangerine", "food", ("mandarin",)),
    ("🍋", "lemon", "food", ()),
    ("🍒", "cherries", "food", ()),
    ("🍑", "peach", "food", ()),
    ("🍍", "pineapple", "food", ()),
    ("🥝", "kiwi", "food", ()),
    ("🍅", "tomato", "food", ()),
    ("🥕", "carrot", "food", ()),
    ("🌽", "corn", "food", ("maize",)),
    ("🥦", "broccoli", "food", ()),
    ("🍄", "mushroom", "food", ("toadstool",)),
    ("🥑", "avocado", "food", ()),
    ("🍞", "bread", "food", ("loaf",)),
    ("🧀", "cheese", "food", ()),
    ("🍕", "pizza", "food", ()),
    ("🍔", "hamburger", "food", ("burger", "cheeseburger")),
    ("🍟", "french fries", "food", ("chips",)),
    ("🌭", "hot dog", "food", ("frankfurter",)),
    ("🍩", "doughnut", "food", ("donut",)),
    ("🍪", "cookie", "food", ("biscuit",)),
    ("🎂", "cake", "food", ()),
    ("🍦", "ice cream", "food", ("gelato",)),
    ("🍭", "lollipop", "food", ()),
    ("🍫", "chocolate bar", "food", ()),
    ("🥚", "egg", "food", ()),
    ("🍳", "fried egg", "food", ()),
    ("🥨", "pretzel", "food", ()),
    ("🍿", "popcorn", "food", ()),
    ("🥛", "glass of milk", "food", ()),
    ("☕", "coffee", "food", ("espresso",)),
    ("🚗", "car", "vehicle", ("automobile", "auto")),
    ("🚕", "taxi", "vehicle", ("cab",)),
    ("🚌", "bus", "vehicle", ()),
    ("🚓", "police car", "vehicle", ()),
    ("🚑", "ambulance", "vehicle", ()),
    ("🚒", "fire truck", "vehicle", ()),
    ("🚚", "truck", "vehicle", ("lorry",)),
    ("🚜", "tractor", "vehicle", ()),
    ("🚲", "bicycle", "vehicle", ("bike",)),
    ("🏍", "motorcycle", "vehicle", ("motorbike",)),
    ("🚂", "train", "vehicle", ()),
    ("✈", "airplane", "vehicle", ("plane", "aeroplane", "aircraft", "jet")),
    ("🚁", "helicopter", "vehicle", ("chopper",)),
    ("🚀", "rocket", "vehicle", ("spaceship",)),
    ("⛵", "sailboat", "vehicle", ("yacht",)),
    ("🚢", "ship", "vehicle", ()),
    ("🛸", "ufo", "vehicle", ()),
    ("🌵", "cactus", "plant", ()),
    ("🌲", "pine tree", "plant", ("fir",)),
    ("🌳", "tree", "plant", ("oak",)),
    ("🌴", "palm tree", "plant", ()),
    ("🌻", "sunflower", "plant", ()),
    ("🌹", "rose", "plant", ()),
    ("🌷", "tulip", "plant", ()),
    ("🍀", "clover", "plant", ("shamrock",)),
    ("🍁", "maple leaf", "plant", ()),
    ("🌸", "cherry blossom", "plant", ()),
    ("🌱", "seedling", "plant", ("sprout",)),
    ("☀", "sun", "weather", ()),
    ("🌙", "moon", "weather", ()),
    ("⭐", "star", "weather", ()),
    ("☁", "cloud", "weather", ()),
    ("⛄", "snowman", "weather", ()),
    ("❄", "snowflake", "weather", ()),
    ("⚡", "lightning bolt", "weather", ("thunderbolt",)),
    ("🌈", "rainbow", "weather", ()),
    ("🔥", "fire", "weather", ("flame", "blaze")),
    ("💧", "water drop", "weather", ("raindrop",)),
    ("☂", "umbrella", "weather", ("parasol",)),
    ("🌊", "wave", "weather", ()),
    ("🏠", "house", "household", ("home", "cottage")),
    ("🔑", "key", "household", ()),
    ("🔒", "padlock", "household", ()),
    ("💡", "light bulb", "household", ("lightbulb",)),
    ("🕯", "candle", "household", ()),
    ("📚", "books", "household", ()),
    ("✏", "pencil", "household", ()),
    ("✂", "scissors", "household", ("shears",)),
    ("📎", "paperclip", "household", ()),
    ("⏰", "alarm clock", "household", ()),
    ("📱", "phone", "household", ("smartphone", "cellphone")),
    ("💻", "laptop", "household", ("computer",)),
    ("📷", "camera", "household", ()),
    ("🎸", "guitar", "household", ()),
    ("🎈", "balloon", "household", ()),
    ("🎁", "gift", "household", ("present",)),
    ("⚽", "soccer ball", "household", ("football",)),
    ("🏀", "basketball", "household", ()),
    ("🎩", "top hat", "household", ()),
    ("👓", "glasses", "household", ("spectacles", "eyeglasses")),
    ("👑", "crown", "household", ()),
    ("🔔", "bell", "household", ()),
    ("🛏", "bed", "household", ()),
    ("🪑", "chair", "household", ("seat",)),
    ("🚪", "door", "household", ()),
    ("🧸", "teddy bear", "household", ()),
    ("⚓", "anchor", "household", ()),
    ("🔨", "hammer", "household", ("mallet",)),
    ("🧲", "magnet", "household", ()),
    ("💎", "diamond", "household", ("jewel",)),
    ("🎃", "pumpkin", "household", ()),
    ("👻", "ghost", "household", ("phantom",)),
    ("🤖", "robot", "household", ("droid",)),
    ("❤", "heart", "household", ()),
]
# CLDR keywords that are not a name for the icon: too general ("face", "animal"), a property ("pretty",
# "hot"), a part or setting ("hump", "hotel"), a zodiac sign, a colour, or a typo ("maze" for corn)
NOT_NAMES = set(
    "face animal food fruit vegetable plant weather zodiac nature object symbol vehicle transport travel sport ball "
    "game toy tool pet sweet dessert drink leo wise pretty bearer ophiuchus cancer pisces flipper spouting spots "
    "stripe spiny green orange citrus berry berries ear maze slice french birthday pastry cream ice soft candy bar "
    "chocolate cooking frying pan twisted glass beverage hot steaming tea patrol police delivery racing steam "
    "railway space resort sea passenger deciduous shedding four falling young bright rays sunny danger voltage zap "
    "drop sweat ocean water lock password closed idea cell pc personal video instrument music box wrapped soccer "
    "hoop top eye eyewear king queen hotel sleep sit plaything plush stuffed attraction horseshoe magnetic halloween "
    "jack lantern creature fantasy tropical hump alarm marsupial cutting locked".split()
) | {"wild cabbage", "fairy tale"}


def render(char: str, font: ImageFont.FreeTypeFont) -> Image.Image:
    """The emoji as a SPRITE x SPRITE RGBA image: cropped to its alpha, centred, LANCZOS-downscaled."""
    text = char if ord(char[0]) >= 0x1F000 else char + "\ufe0f"  # text-default symbols need emoji presentation
    canvas = Image.new("RGBA", (160, 160))
    ImageDraw.Draw(canvas).text((8, 8), text, font=font, embedded_color=True)
    box = canvas.getchannel("A").getbbox()
    if box is None:
        raise ValueError(f"the font draws nothing for {char!r}")
    glyph = canvas.crop(box)
    side = max(glyph.size)
    square = Image.new("RGBA", (side, side))
    square.paste(glyph, ((side - glyph.width) // 2, (side - glyph.height) // 2))
    return square.resize((SPRITE, SPRITE), Image.LANCZOS)


def keywords(annotations: str) -> dict[str, list[str]]:
    """emoji -> its CLDR keywords (lower case), for the emoji with and without the presentation selector."""
    found = re.findall(r'<annotation cp="([^"]+)">([^<]+)</annotation>', annotations)
    return {cp.replace("\ufe0f", ""): [k.strip().lower() for k in words.split("|")] for cp, words in found}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="folder the two Debian packages were unpacked into")
    args = parser.parse_args()
    root = Path(args.root)
    font = ImageFont.truetype(str(root / FONT), 109)
    cldr = keywords((root / ANNOTATIONS).read_text())
    names = {name for _, name, _, _ in ICONS}
    heldout = {word for *_, held in ICONS for word in held}
    clash = {w for phrase in names for w in phrase.split()} & heldout
    if clash:
        raise ValueError(f"held-out names that are also (part of) icon names: {sorted(clash)}")
    uses: dict[str, int] = {}
    for char, *_ in ICONS:
        for k in set(cldr.get(char, [])):
            uses[k] = uses.get(k, 0) + 1
    cols = 16
    rows = -(-len(ICONS) // cols)
    atlas = Image.new("RGBA", (cols * SPRITE, rows * SPRITE))
    entries = []
    for i, (char, name, category, held) in enumerate(ICONS):
        atlas.paste(render(char, font), ((i % cols) * SPRITE, (i // cols) * SPRITE))
        alternates = sorted(
            k
            for k in cldr.get(char, [])
            if uses[k] == 1
            and k not in NOT_NAMES
            and not set(k.split()) & heldout
            and k not in names
            and re.fullmatch(r"[a-z][a-z -]*", k)
        )
        entries.append(
            {"emoji": char, "name": name, "category": category, "alternates": alternates, "heldout": list(held)}
        )
    OUT.mkdir(parents=True, exist_ok=True)
    atlas.save(OUT / "atlas.png", optimize=True)
    meta = {
        "sprite": SPRITE,
        "columns": cols,
        "icons": entries,
        "source": "Noto Color Emoji 2.042 (SIL OFL 1.1), CLDR 41 English annotations",
    }
    (OUT / "icons.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    license_file = root / LICENSE
    if license_file.exists():
        (OUT / "LICENSE-OFL.txt").write_text(license_file.read_text())
    print(f"wrote {len(entries)} icons to {OUT}")


if __name__ == "__main__":
    main()
