"""The icons world's understanding stage: a prompt as people write it in, the world's own caption out, and a
note for every part of it the world cannot draw.

    1. as written  a prompt in the world's own words (the training captions') goes straight on: no LM call
    2. read        otherwise the trained reader (reader.py) tags each thing's words, the background's colour
                   words and colours said of things, and reads the frame (relation, counts, size)
    3. name        each thing's words name an icon: one of the world's names or alternates as they are, else the
                   name matcher (names.py: MiniLM's shortlist re-ranked by SmolLM2), else the thing is left out;
                   the background's words name the nearest of the world's backgrounds (colours.py)
    4. write       the scene as the world's caption ("a small cat below a table on a light blue background"),
                   with notes: a thing the world lacks, a count above three, more things than a scene holds, a
                   colour said of a thing, a background colour the world lacks, a script the models do not read

    stage = IconsUnderstanding(encoder)
    stage.apply(["four purple kittens on a yellow background"], True)[0]
    # Understood(text='three cats on a beige background', how='rewritten',
    #            notes=('"four": at most three of a thing are drawn; drew three', ...))
"""

from __future__ import annotations

import functools
import re
import threading
import unicodedata
from pathlib import Path

from pipeline.worlds.base import Understood
from pipeline.worlds.icons import colours
from pipeline.worlds.icons.catalogue import NameVectors, icons, names, phrase_table, plural, words_of
from pipeline.worlds.icons.layout import MAX_ICONS, read_request
from pipeline.worlds.icons.names import NameMatcher
from pipeline.worlds.icons.reader import CONFIG, READER_DIR, Reading, shared_reader
from pipeline.worlds.icons.scenes import (
    BACKGROUND_PHRASES,
    NUMBERS,
    RELATION_WORDS,
    TEMPLATES,
    UNCOUNTABLE,
    article,
    caption_words,
    template_fields,
)

_WORLD_WORD = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*|[^\sa-z0-9,.!]", re.IGNORECASE)
_VARIATION = dict.fromkeys(map(ord, "\ufe0f\ufe0e\u200d"), None)


def from_emoji(prompt: str) -> str:
    """The prompt with each of the world's emoji replaced by its icon's name ("🐶 and 🐱" -> "a dog and a cat")."""
    if not any(ord(ch) > 0x2000 for ch in prompt):
        return prompt
    text = prompt.translate(_VARIATION)
    for emoji, name in _emoji():
        if emoji in text:
            text = text.replace(emoji, f" {article(name)} ")
    return " ".join(text.split())


@functools.cache
def _emoji() -> list[tuple[str, str]]:
    """(emoji less variation selectors, icon name), longer sequences first."""
    pairs = [(icon.emoji.translate(_VARIATION), icon.name) for icon in icons().values() if icon.emoji]
    return sorted(pairs, key=lambda p: -len(p[0]))


def unreadable_script(prompt: str) -> bool:
    """Is most of the prompt's lettering in a script the language models (English MiniLM and SmolLM2) do not
    read: letters beyond Latin, Greek and Cyrillic?"""
    letters = [ch for ch in prompt if unicodedata.category(ch).startswith("L")]
    foreign = [ch for ch in letters if ord(ch) > 0x52F]
    return bool(letters) and len(foreign) > len(letters) / 2


class IconsUnderstanding:
    """The icons world's prompt-reading stage (pipeline/worlds/base.py PromptReader)."""

    def __init__(self, encoder, folder: str | Path = READER_DIR):
        self.encoder, self.folder = encoder, Path(folder)
        self.catalogue = NameVectors(encoder)  # the world's names as MiniLM states
        self.matcher = NameMatcher(names(), self.catalogue.name_vectors, self.catalogue.embed)
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        return (self.folder / CONFIG).is_file()

    def reader(self):
        with self._lock:
            return shared_reader(str(self.folder))

    def load_in_background(self) -> threading.Thread:
        """Load the reader and the name matcher now, so the first free prompt does not wait for them."""

        def load():
            self.catalogue.name_vectors()
            self.reader()
            self.matcher.load()

        thread = threading.Thread(target=load, name="load-icons-reader", daemon=True)
        thread.start()
        return thread

    def in_world_words(self, prompt: str, taught: frozenset[str] = frozenset()) -> bool:
        """Is the prompt one of the world's own captions (`is_world_caption`), or a LoRA's caption of a thing it
        teaches, in the world's words? Those go to the generator as written."""
        if is_world_caption(prompt, taught):
            return True
        words = [w.lower() for w in _WORLD_WORD.findall(prompt)]
        return bool(taught) and bool(words) and all(w in _caption_words() or w in taught for w in words)

    def names_content(self, prompt: str) -> bool:
        """Does the prompt name something to draw (a world's name, or a thing the reader finds)?"""
        prompt = from_emoji(prompt)
        table = phrase_table()
        words = words_of(prompt)
        if any(tuple(words[i : i + n]) in table for i in range(len(words)) for n in (1, 2, 3)):
            return True
        if self.in_world_words(prompt) or not self.available:
            return False
        reading = self.reader().read([prompt])[0]
        return reading.kind != "none" and reading.confidence >= self.reader().cfg.min_confidence

    def apply(self, prompts: list[str], understand: bool, taught: frozenset[str] = frozenset()) -> list[Understood]:
        if not understand:
            return [Understood(p, p, "off") for p in prompts]
        texts = [from_emoji(p) for p in prompts]
        todo = [i for i, t in enumerate(texts) if not self.in_world_words(t, taught)]
        unique = list(dict.fromkeys(texts[i] for i in todo))
        readings = dict(zip(unique, self.reader().read(unique))) if unique else {}
        out = []
        for p, t in zip(prompts, texts):
            if t not in readings:
                out.append(Understood(p, t, "rewritten" if t != p else "as written"))
            else:
                out.append(self.understood(p, t, readings[t], taught))
        return out

    def understood(self, prompt: str, text: str, reading: Reading, taught: frozenset[str]) -> Understood:
        """Steps 3 and 4 for one read prompt."""
        if unreadable_script(text):
            note = "written in a script the language models do not read: drawn as written"
            return Understood(prompt, text, "not understood", (note,))
        if reading.kind == "none" or reading.confidence < self.reader().cfg.min_confidence:
            return Understood(prompt, text, "not understood")
        caption, notes = self.write(reading, taught)
        return Understood(prompt, caption, "rewritten" if caption != prompt else "as written", tuple(notes))

    def name_of(self, words: str, taught: frozenset[str]) -> tuple[str | None, str | None]:
        """The icon (or a LoRA's taught phrase) a thing's words name, and a note when it is only the nearest icon
        or none (then the note names the nearest guess)."""
        key = tuple(words_of(words))
        table = phrase_table()
        if key in table:
            return table[key][0], None
        if words in taught or all(w in taught for w in key):
            return words, None
        for singular in _singulars(words):
            if tuple(words_of(singular)) in table:
                return table[tuple(words_of(singular))][0], None
        tries = [words, *_singulars(words)]
        for word in tries:
            name, sure = self.matcher.match(word)
            if name is not None and sure:
                return name, None
        for word in tries:
            name, _ = self.matcher.match(word)
            if name is not None:
                return name, f'"{words}": no such icon; drew the nearest, {name}'
        return None, self.matcher.scores(words)[0][0]

    def write(self, reading: Reading, taught: frozenset[str]) -> tuple[str, list[str]]:
        """The world's caption of a reading, and the notes on what it does not draw as asked."""
        notes: list[str] = []
        things: list[tuple[str, int]] = []
        nearest: list[tuple[int, str, str]] = []  # (its note, words, the best guess) per thing left out
        for words, count in reading.things:
            name, said = self.name_of(words, taught)
            if name is None:  # `said` is the nearest guess
                nearest.append((len(notes), words, said))
                notes.append(f'"{words}": this world has no such thing, left out')
                continue
            if said:
                notes.append(said)
            if count > 3:
                notes.append(f'more than three "{words}": a scene holds at most three; drew three')
                count = 3
            if count > 1 and name in UNCOUNTABLE:
                notes.append(f'"{words}": {name} cannot be counted in this world; drew it once')
                count = 1
            if things and things[-1][0] == name:  # "a cat and a kitten": two cats
                things[-1] = (name, min(3, things[-1][1] + count))
            else:
                things.append((name, count))
        if not things and nearest:  # a picture needs a thing: the nearest guess, said
            at, words, guess = nearest[0]
            notes[at] = f'"{words}": this world has no such thing; drew the nearest it has, {guess}'
            things.append((guess, 1))
        kept, total = [], 0
        for name, count in things:
            if total + count > MAX_ICONS:
                notes.append(f"a scene holds at most three things: {name} left out")
                continue
            kept.append((name, count))
            total += count
        for hue in reading.hues:
            notes.append(f'"{hue}" for a thing: icons keep their own colours')
        relation = reading.relation
        if relation and not (len(kept) == 2 and kept[0][1] == kept[1][1] == 1):
            if len(kept) > 1:
                notes.append(
                    f'"{RELATION_WORDS[relation]}" is drawn between two single things only: drawn side by side'
                )
            relation = None
        background = None
        if reading.background:
            background, note = colours.background_of(reading.background)
            if note:
                notes.append(note)
        size = reading.size if len(kept) == 1 and kept[0][1] == 1 else None
        return caption_of(kept, relation, size, background), notes


def _normal(text: str) -> str:
    return " ".join(text.lower().replace(",", " , ").split()).rstrip(" .!")


def is_world_caption(prompt: str, taught: frozenset[str] = frozenset()) -> bool:
    """Is the prompt, case, spacing and a closing full stop aside, a caption the world's training could have
    written for the scene the layout stage reads in it (any of its templates, names and background phrases)?
    Then nothing in it is lost: no thing beyond three, no colour of a thing, no relation said another way."""
    text = _normal(prompt)
    if not text or any(w not in _caption_words() and w not in taught for w in _WORLD_WORD.findall(text)):
        return False
    request = read_request(prompt, tuple(taught))
    return text in {_normal(c) for c in captions_of(request)}


@functools.cache
def _caption_words() -> frozenset[str]:
    return frozenset(caption_words())  # punctuation is not a word here: _WORLD_WORD skips ",", "." and "!"


def captions_of(request) -> set[str]:
    """Every caption the world's templates (scenes.py TEMPLATES, BACKGROUND_PHRASES) write for a request."""
    things = request.things
    if len(things) == 1:
        kind = "single"
    elif len(set(things)) == 1 and len(things) in NUMBERS:
        kind = "count"
    elif len(things) == 2:
        kind = "relation" if request.relation else "pair"
    else:
        return set()
    names = {t: (t, *icons()[t].alternates) if t in icons() else (t,) for t in set(things)}
    out = set()
    for template in TEMPLATES[kind]:
        for first in names[things[0]]:
            for last in names[things[-1]]:
                out.add(template.format(**template_fields(things, first, last, request.relation, request.size)))
    if request.background is None:
        return out
    return {f"{c} {p.format(bg=request.background)}" for c in out for p in BACKGROUND_PHRASES}


def _singulars(words: str) -> list[str]:
    """The singular a plural's last word most likely has ("puppies" -> "puppy", "foxes" -> "fox", "cats" ->
    "cat"); none for a word that does not end in s."""
    *head, last = words.split()
    if last.endswith("ies") and len(last) > 4:
        form = last[:-3] + "y"
    elif last.endswith(("ses", "shes", "ches", "xes", "zes")):
        form = last[:-2]
    elif last.endswith("s") and not last.endswith("ss") and len(last) > 3:
        form = last[:-1]
    else:
        return []
    return [" ".join([*head, form])]


def _counted(name: str, count: int, size: str | None = None) -> str:
    if count == 1:
        return article(f"{size} {name}" if size else name)
    return f"{NUMBERS[count]} {plural(name)}"


def caption_of(things: list[tuple[str, int]], relation: str | None, size: str | None, background: str | None) -> str:
    """The world's caption: "a small cat", "three frogs", "a cat and two dogs", "a rocket above a moon", each
    with " on a {background} background" when one is said."""
    parts = [_counted(n, c, size if i == 0 else None) for i, (n, c) in enumerate(things)]
    if relation:
        text = f"{parts[0]} {RELATION_WORDS[relation]} {parts[1]}"
    elif len(parts) > 2:
        text = ", ".join(parts[:-1]) + " and " + parts[-1]
    else:
        text = " and ".join(parts)
    return text + (f" on a {background} background" if background else "")
