"""The app's door: every call to an event is checked before gradio routes it (an ASGI middleware).

gradio 6 finds an event named in `/gradio_api/call/NAME` among all of them, the page's own hidden events included
(their `api_visibility="private"` hides them from the API page only), answers a name or `fn_index` it does not
know with a bare "Internal Server Error", drops extra input values without a word, and reads a file path sent in
a request as a file to copy, echoing the server's folder when it refuses one. `RequestGate` answers each of
these with one line of JSON and a 4xx status, before gradio sees the request:

    POST /gradio_api/call/NAME     NAME must be a public event                        404 otherwise
    POST /gradio_api/queue/join    fn_index must be an event                          404 otherwise
    both                           no more input values than the event takes          400 otherwise
                                   each value the JSON its input takes (text for a    400 otherwise
                                   Textbox, true or false for a Checkbox...)
                                   every file a value names is in gradio's upload     400 otherwise
                                   folder (an upload, or a result it served), never
                                   a path on the server, and an image there is at
                                   most MAX_SIDE a side (read from its header)

    gate = Middleware(RequestGate, events=events_of(demo), folders=[gradio_folder()])
    demo.launch(app_kwargs={"middleware": [gate]})
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from pipeline.images import MAX_SIDE

MAX_BODY = 2 * 2**20  # a call's JSON body; files come through /upload
_CALL = re.compile(r"^(?:/[^/]+)*/gradio_api/call/(?:v2/)?([^/]+)/?$")
_JOIN = re.compile(r"^(?:/[^/]+)*/gradio_api/queue/join/?$")


# The JSON a form component's value must be (gradio turns a list sent to a Textbox into its text, and any value
# sent to a Checkbox into its truth): None is each one's "not sent"
KINDS = {"Textbox": "text", "Radio": "text", "Dropdown": "text", "Checkbox": "true or false"}
KINDS |= {"Number": "a number", "Slider": "a number"}
_ACCEPTS = {"text": (str,), "true or false": (bool,), "a number": (int, float)}


@dataclass(frozen=True)
class Input:
    label: str
    kind: str | None  # the JSON its value must be (a key of _ACCEPTS); None: any
    low: float | None = None  # a number's range
    high: float | None = None
    choices: tuple[str, ...] | None = None  # a fixed list of choices


@dataclass(frozen=True)
class Event:
    name: str
    inputs: int
    public: bool
    kinds: tuple[Input, ...] = ()


def input_of(component) -> Input:
    kind = KINDS.get(type(component).__name__)
    low, high = getattr(component, "minimum", None), getattr(component, "maximum", None)
    choices = getattr(component, "choices", None)
    fixed = choices is not None and not getattr(component, "allow_custom_value", False)
    values = tuple(str(c[1] if isinstance(c, (tuple, list)) else c) for c in choices) if fixed else None
    return Input(str(component.label or type(component).__name__), kind, low, high, values)


def events_of(demo) -> dict[int, Event]:
    """The page's events by fn_index: name, inputs and whether the API may call it by name."""
    out = {}
    for i, fn in demo.fns.items():
        public = fn.api_visibility == "public" and fn.fn is not None
        out[i] = Event(str(fn.api_name), len(fn.inputs), public, tuple(input_of(c) for c in fn.inputs))
    return out


def wrong_value(event: Event, data: list) -> str | None:
    """The first value its input does not take (the wrong JSON, out of range, not a choice), said in a line."""
    for k, (value, spec) in enumerate(zip(data, event.kinds)):
        if spec.kind is None or value is None:
            continue
        where = f"input {k + 1} of {event.name} ({spec.label})"
        number = spec.kind == "a number"
        if not isinstance(value, _ACCEPTS[spec.kind]) or (number and isinstance(value, bool)):
            return f"{where} must be {spec.kind}, got {type(value).__name__}"
        if number and value == value:  # NaN goes on to the form's own check, which names it
            if spec.low is not None and value < spec.low:
                return f"{where}: value {value!r} is less than minimum value {spec.low:g}"
            if spec.high is not None and value > spec.high:
                return f"{where}: value {value!r} is greater than maximum value {spec.high:g}"
        if spec.choices is not None and value not in spec.choices:
            return f"{where}: value {value!r} is not in the list of choices: {', '.join(spec.choices)}"
    return None


def gradio_folder() -> Path:
    """Where gradio keeps uploads and the results it serves: $GRADIO_TEMP_DIR, or its default."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")


def inside(path: str, folders: list[Path]) -> bool:
    try:
        resolved = Path(path).resolve()
    except (OSError, ValueError):
        return False
    return any(Path(f).resolve() in resolved.parents for f in folders)


def _paths(value) -> list[str]:
    """Every "path" of a file value (gradio's FileData: {"path": ..., "meta": {"_type": "gradio.FileData"}})."""
    if isinstance(value, dict):
        found = [value["path"]] if isinstance(value.get("path"), str) else []
        return found + [p for v in value.values() for p in _paths(v)]
    if isinstance(value, list):
        return [p for v in value for p in _paths(v)]
    return []


def problem(events: dict[int, Event], folders: list[Path], path: str, body: bytes) -> tuple[int, str] | None:
    """(status, message) for a call the gate refuses, None for one it lets through."""
    call, join = _CALL.match(path), _JOIN.match(path)
    if not (call or join):
        return None
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        return 400, "the request body is not JSON"
    if not isinstance(payload, dict):
        return 400, 'the request body must be a JSON object: {"data": [...]}'
    if call:
        found = [e for e in events.values() if e.public and e.name == call.group(1)]
        if not found:
            names = ", ".join(sorted(e.name for e in events.values() if e.public))
            return 404, f"no endpoint named {call.group(1)!r}; the endpoints are: {names}"
        event = found[0]
    else:
        index = payload.get("fn_index")
        if not isinstance(index, int) or isinstance(index, bool) or index not in events:
            return 404, f"no event with fn_index {index!r}"
        event = events[index]
    data = payload.get("data", [])
    if not isinstance(data, list):
        return 400, '"data" must be a list of input values'
    if len(data) > event.inputs:
        return 400, f"{event.name} takes {event.inputs} inputs, got {len(data)}"
    wrong = wrong_value(event, data)
    if wrong:
        return 400, wrong
    paths = _paths(data)
    if any(not inside(p, folders) for p in paths):
        return 400, "a file must be uploaded first (POST /gradio_api/upload), not named by a path on the server"
    for p in paths:
        too_big = _too_big(p)
        if too_big:
            return 400, too_big
    return None


def _too_big(path: str) -> str | None:
    """What is wrong with an image file over MAX_SIDE a side, read from its header alone (None: fine, or not an
    image Pillow reads)."""
    name = Path(path).name
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # only the header is read here
            with Image.open(path) as image:
                w, h = image.size
    except Image.DecompressionBombError:  # Pillow's own limit (pipeline/images.py refuse_image_bombs)
        return f"{name} has more pixels than {MAX_SIDE}x{MAX_SIDE}, the largest image accepted; downscale it"
    except (OSError, ValueError, SyntaxError):
        return None
    if max(w, h) > MAX_SIDE:
        return f"{name} is {w}x{h}; the largest image accepted is {MAX_SIDE}x{MAX_SIDE}, downscale it"
    return None


class RequestGate:
    """ASGI middleware: `problem` for every POST to an event, answered before the app when it finds one."""

    def __init__(self, app, events: dict[int, Event], folders: list[Path]):
        self.app, self.events, self.folders = app, events, folders

    async def __call__(self, scope, receive, send):
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not (_CALL.match(scope["path"]) or _JOIN.match(scope["path"]))
        ):
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_BODY:
                return await _answer(send, 413, f"the request is over {MAX_BODY // 2**20} MB; upload files instead")
        found = problem(self.events, self.folders, scope["path"], body)
        if found is not None:
            return await _answer(send, *found)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


async def _answer(send, status: int, message: str) -> None:
    body = json.dumps({"error": message, "detail": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
