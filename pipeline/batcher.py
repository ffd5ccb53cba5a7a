"""Micro-batching for a server: requests that arrive together run as one pipeline call.

Each server thread calls `batcher.text_to_image(request, callback=...)` and blocks for its own result.
One worker thread takes the first waiting request, gathers the compatible ones that arrive within
`window_s` (an equal `TextToImageRequest.batch_key`: same steps, guidance, LoRA and options; up to
`max_images` images in all), runs them as one batch and hands each caller its own images. Requests that arrive
while a batch runs wait in the queue and make up the next batch, so the window can stay short (2 ms, extended
by each arrival up to
20 ms: a lone request barely waits, a burst rides together). Clients of a burst rarely land within one
window, so a batch still in its first REGROUP_STEPS denoising steps starts over with the compatible
requests that arrived meanwhile (each image depends on its seed only, so nothing changes but the batch
size; at most the first steps' work is redone, and a lone request never waits).
Every caller's callback sees every denoising step of its batch. With a MainThreadRunner, the pipeline
calls themselves run on the app's main thread.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

from pipeline.memory import release_memory
from pipeline.protocol import ImagePipeline, Result, check_request, image_seed, resolve_seed
from pipeline.requests import TextToImageRequest

REGROUP_STEPS = 2  # a batch in its first this-many steps starts over to take in compatible arrivals
MAX_REGROUPS = 3  # ... at most this many times, so a steady stream cannot keep it from finishing


class _Regroup(Exception):
    """Raised from a batch's step callback: compatible requests are waiting; run again with them."""


@dataclass
class _Pending:
    request: TextToImageRequest
    callback: object
    future: Future = field(default_factory=Future)


class MainThreadRunner:
    """Runs pipeline calls on the thread that calls `serve_forever` (the app's main thread).

    PyTorch's OpenMP workers overlap poorly when a call starts on any other thread (docs/speed.md measures it),
    so the server's threads gather requests and the main thread computes."""

    TRIM_EVERY_S = 10.0  # hand freed memory back to the system at most this often, and only when idle
    IDLE_S = 1.0  # idle means no call for this long

    def __init__(self):
        self._calls: queue.Queue = queue.Queue()
        self._trimmed = time.monotonic()

    def call(self, fn, *args, **kwargs):
        """Run fn(*args, **kwargs) on the serving thread; block for its result or exception."""
        future: Future = Future()
        self._calls.put((future, fn, args, kwargs))
        return future.result()

    def serve_forever(self) -> None:
        worked = False  # a call ran since the last trim
        while True:
            wait = max(self.IDLE_S, self.TRIM_EVERY_S - (time.monotonic() - self._trimmed)) if worked else None
            try:
                future, fn, args, kwargs = self._calls.get(timeout=wait)
            except queue.Empty:  # idle: freed models and the largest batch so far need not stay resident
                release_memory()
                self._trimmed, worked = time.monotonic(), False
                continue
            try:
                result, error = fn(*args, **kwargs), None
            except BaseException as err:  # the caller hears of it; the serving thread lives on
                result, error = None, err
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)
            worked = True


def _call_here(fn, *args, **kwargs):
    return fn(*args, **kwargs)


class Batcher:
    def __init__(
        self,
        wb: ImagePipeline,
        *,
        max_images: int = 16,
        window_s: float = 0.002,
        runner: MainThreadRunner | None = None,
    ):
        """runner: where pipeline calls run (default: the batcher's own worker thread)."""
        self.wb, self.max_images, self.window_s = wb, max_images, window_s
        self._run_call = runner.call if runner is not None else _call_here
        self._waiting: deque[_Pending] = deque()  # arrived, not yet in a batch, in arrival order
        self._arrived = threading.Condition()  # guards _waiting and _closed; notified on each arrival
        self._closed = False
        self._lock = threading.Lock()  # one pipeline call at a time, batched or not
        self.batch_sizes: list[int] = []  # requests per batch run, for tests and benchmarks
        self.regroups = 0  # batches started over to take in arrivals, for tests and benchmarks
        self._thread = threading.Thread(target=self._worker, name="wordbrush-batcher", daemon=True)
        self._thread.start()

    def text_to_image(self, request: TextToImageRequest, *, callback=None, timeout: float | None = None) -> Result:
        """Block until this request's images are ready; errors of this request are raised here."""
        pending = _Pending(request, callback)
        with self._arrived:
            if self._closed:
                raise ValueError("this model was just replaced by another; send the request again")
            self._waiting.append(pending)
            self._arrived.notify()
        return pending.future.result(timeout=timeout)

    def close(self) -> None:
        """End the worker after the requests already queued (a model switch drops the old batchers)."""
        with self._arrived:
            self._closed = True
            self._arrived.notify()

    def run_alone(self, fn, *args, **kwargs):
        """Run another pipeline call (style transfer, inpainting) between batches."""
        with self._lock:
            return self._run_call(fn, *args, **kwargs)

    def _worker(self) -> None:
        while True:
            with self._arrived:
                while not self._waiting and not self._closed:
                    self._arrived.wait()
                if not self._waiting:  # closed, and everyone queued before was served
                    return
                batch = [self._waiting.popleft()]
            self._run(self._gather(batch))

    def _gather(self, batch: list[_Pending]) -> list[_Pending]:
        """`batch` plus the compatible requests that are waiting or arrive within the window: each
        arrival extends it by window_s, up to 10 x window_s in all."""
        start = time.monotonic()
        deadline = start + self.window_s
        with self._arrived:
            while True:
                self._take_compatible(batch)
                left = deadline - time.monotonic()
                if _images(batch) >= self.max_images or left <= 0:
                    return batch
                seen = len(self._waiting)
                self._arrived.wait(left)
                if len(self._waiting) > seen:
                    deadline = min(time.monotonic() + self.window_s, start + 10 * self.window_s)

    def _take_compatible(self, batch: list[_Pending]) -> bool:
        """Move waiting requests that can share `batch`'s pipeline call into it (caller holds _arrived)."""
        key, images, took = batch[0].request.batch_key(), _images(batch), False
        for p in list(self._waiting):
            if p.request.batch_key() == key and images + p.request.num_images <= self.max_images:
                self._waiting.remove(p)
                batch.append(p)
                images += p.request.num_images
                took = True
        return took

    def _compatible_waiting(self, batch: list[_Pending]) -> bool:
        key, room = batch[0].request.batch_key(), self.max_images - _images(batch)
        with self._arrived:
            return any(p.request.batch_key() == key and p.request.num_images <= room for p in self._waiting)

    def _run(self, batch: list[_Pending]) -> None:
        for regroups_left in range(MAX_REGROUPS, -1, -1):
            try:
                return self._run_once(batch, may_regroup=regroups_left > 0)
            except _Regroup:
                self.regroups += 1
                batch = self._gather(batch)

    def _run_once(self, batch: list[_Pending], *, may_regroup: bool) -> None:
        valid = []
        for p in batch:  # a bad request fails alone, not its whole batch
            r = p.request
            steps = self.wb.default_steps if r.steps is None else r.steps
            guidance = self.wb.default_guidance if r.guidance is None else r.guidance
            try:
                check_request([r.prompt], [r.seed], steps=steps, guidance=guidance, num_images=r.num_images)
                valid.append(p)
            except ValueError as err:
                p.future.set_exception(err)
        batch[:] = valid
        if not valid:
            return
        prompts = [p.request.prompt for p in valid for _ in range(p.request.num_images)]
        seeds = [resolve_seed(p.request.seed) for p in valid]
        flat_seeds = [image_seed(s, j) for p, s in zip(valid, seeds) for j in range(p.request.num_images)]

        def fan_out(step, total, preview):
            if may_regroup and step <= REGROUP_STEPS and step < total and self._compatible_waiting(valid):
                raise _Regroup
            for p in valid:
                if p.callback is not None:
                    try:
                        p.callback(step, total, preview)
                    except Exception:  # a caller that went away must not stop the others
                        pass

        first = valid[0].request
        try:
            with self._lock:  # the batch shares one LoRA and settings: they are part of the batching key
                batched = dataclasses.replace(first, prompt=prompts, seed=flat_seeds, num_images=1)
                result = self._run_call(self.wb.text_to_image, batched, callback=fan_out)
        except _Regroup:  # not an error: _run gathers the arrivals and starts again
            raise
        except Exception as err:  # e.g. a prompt the tokenizer rejects, or out of memory
            if len(valid) == 1:
                valid[0].future.set_exception(err)
                return
            for p in valid:  # run each alone: only the request that fails hears of it
                self._run_once([p], may_regroup=False)
            return
        self.batch_sizes.append(len(valid))
        start = 0
        for p in valid:
            n = p.request.num_images
            p.future.set_result(Result(result.images[start : start + n], result.recipes[start : start + n]))
            start += n


def _images(batch: list[_Pending]) -> int:
    return sum(p.request.num_images for p in batch)
