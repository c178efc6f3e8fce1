"""Recorded bus access: capture what a BusAccess answered, replay it without QEMU.

:class:`RecordingBus` wraps any :class:`~harness.nt.busaccess.BusAccess` (normally the
live one) and writes down every call with its answer; :meth:`RecordingBus.save` stores
the transcript as JSON.  :class:`ReplayBus` is a BusAccess built from such a transcript:
the same calls get the same answers, in the order they were recorded, so HAL tests run in
milliseconds without a machine (an extra layer: the real-QEMU tests stay the reference).

Replay matches calls by operation and arguments.  Answers to one key come back in
recording order, so a port read that changed between two reads replays both values; a
write must have been recorded with the same arguments.  Anything else raises
:class:`NotRecordedError` naming the call and what the transcript holds for it.  With
``strict=True`` the whole sequence must also be replayed in the recorded order.
``DecodeMap`` calls (``pci_root_windows``, ``decoded_ranges``, ``bar_mappings``) are recorded and replayed
the same way when the wrapped bus offers them.

Transcript format (``version`` 1)::

    {"format": "harness-bus-transcript", "version": 1, "meta": {...},
     "calls": [{"op": "read_config", "args": [0, 3, 0, 0, 64], "result": "<hex>"},
               {"op": "read_port", "args": [113, 1], "result": 38}, ...]}
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

from ..atomicio import write_text
from .busaccess import BusAccess, BusAccessError, DecodedSpan, DecodeMap

FORMAT = "harness-bus-transcript"
VERSION = 1
_DECODE_OPS = ("pci_root_windows", "decoded_ranges", "bar_mappings")
_OPS = ("read_port", "write_port", "read_config", "write_config", "read_memory", *_DECODE_OPS)


class NotRecordedError(BusAccessError):
    """The replayed code made an access the transcript does not hold."""


class TranscriptError(BusAccessError):
    """A transcript file is not one this module wrote."""


def _encode(op: str, result: Any) -> Any:
    if op in ("read_config", "read_memory"):
        return bytes(result).hex()
    if op == "decoded_ranges":
        return [span.to_json() for span in result]
    if op == "pci_root_windows":
        return {space: [list(w) for w in windows] for space, windows in result.items()}
    if op == "bar_mappings":
        return {str(index): list(w) for index, w in result.items()}
    return result


def _decode(op: str, result: Any) -> Any:
    if op in ("read_config", "read_memory"):
        return bytes.fromhex(result)
    if op == "decoded_ranges":
        return [DecodedSpan.from_json(item) for item in result]
    if op == "pci_root_windows":
        return {space: [tuple(w) for w in windows] for space, windows in result.items()}
    if op == "bar_mappings":
        return {int(index): tuple(w) for index, w in result.items()}
    return result


def _args(op: str, args: tuple) -> list:
    if op == "write_config":
        bus, device, function, offset, data = args
        return [bus, device, function, offset, bytes(data).hex()]
    return list(args)


class RecordingBus:
    """A BusAccess that forwards to ``inner`` and records every call and answer.

    When ``inner`` is also a DecodeMap the instance is a :class:`RecordingDecodeBus`, so
    the recorder offers exactly the capabilities of what it wraps."""

    def __new__(cls, inner: BusAccess, meta: dict[str, Any] | None = None) -> "RecordingBus":
        if cls is RecordingBus and isinstance(inner, DecodeMap):
            cls = RecordingDecodeBus
        return super().__new__(cls)

    def __init__(self, inner: BusAccess, meta: dict[str, Any] | None = None) -> None:
        self.inner = inner
        self.meta = dict(meta or {})
        self.calls: list[dict[str, Any]] = []

    @property
    def epoch(self) -> int:
        return self.inner.epoch

    def _call(self, op: str, *args: Any) -> Any:
        result = getattr(self.inner, op)(*args)
        self.calls.append({"op": op, "args": _args(op, args), "result": _encode(op, result)})
        return result

    def read_port(self, port: int, size: int = 1) -> int:
        return self._call("read_port", port, size)

    def write_port(self, port: int, value: int, size: int = 1) -> None:
        self._call("write_port", port, value, size)

    def read_config(self, bus: int, device: int, function: int, offset: int, length: int) -> bytes:
        return self._call("read_config", bus, device, function, offset, length)

    def write_config(self, bus: int, device: int, function: int, offset: int, data: bytes) -> None:
        self._call("write_config", bus, device, function, offset, bytes(data))

    def read_memory(self, address: int, length: int) -> bytes:
        return self._call("read_memory", address, length)

    def transcript(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "meta": self.meta, "calls": list(self.calls)}

    def save(self, path: str | Path) -> None:
        write_text(path, json.dumps(self.transcript(), indent=0, sort_keys=True) + "\n")


class RecordingDecodeBus(RecordingBus):
    """A RecordingBus over a bus that is also a DecodeMap."""

    def pci_root_windows(self) -> dict[str, list[tuple[int, int]]]:
        return self._call("pci_root_windows")

    def decoded_ranges(self) -> list[DecodedSpan]:
        return self._call("decoded_ranges")

    def bar_mappings(self, bus: int, device: int, function: int) -> dict[int, tuple[int, int]]:
        return self._call("bar_mappings", bus, device, function)


class ReplayBus:
    """A BusAccess answering from a transcript (see the module docstring).

    A transcript that recorded DecodeMap calls gives a :class:`ReplayDecodeBus`."""

    def __new__(cls, transcript: dict[str, Any], *, strict: bool = False) -> "ReplayBus":
        if cls is ReplayBus and any(c.get("op") in _DECODE_OPS
                                    for c in transcript.get("calls", ())):
            cls = ReplayDecodeBus
        return super().__new__(cls)

    def __init__(self, transcript: dict[str, Any], *, strict: bool = False) -> None:
        if transcript.get("format") != FORMAT or transcript.get("version") != VERSION:
            raise TranscriptError(f"not a version-{VERSION} {FORMAT} "
                                  f"(format={transcript.get('format')!r}, version={transcript.get('version')!r})")
        self.meta = transcript.get("meta", {})
        self.strict = strict
        self._calls = transcript["calls"]
        self._queues: dict[tuple, deque[tuple[int, Any]]] = defaultdict(deque)
        for i, call in enumerate(self._calls):
            if call["op"] not in _OPS:
                raise TranscriptError(f"call {i}: unknown operation {call['op']!r}")
            self._queues[(call["op"], *map(_freeze, call["args"]))].append((i, call["result"]))
        self._next = 0
        self.replayed = 0

    @classmethod
    def load(cls, path: str | Path, *, strict: bool = False) -> "ReplayBus":
        return cls(json.loads(Path(path).read_text()), strict=strict)

    @property
    def epoch(self) -> int:
        return 0  # a transcript is one phase of one machine

    @property
    def remaining(self) -> int:
        """Recorded calls not replayed yet."""
        return sum(len(q) for q in self._queues.values())

    def _answer(self, op: str, *args: Any) -> Any:
        key = (op, *map(_freeze, _args(op, args)))
        queue = self._queues.get(key)
        if not queue:
            shown = ", ".join(f"{a:#x}" if isinstance(a, int) else repr(a) for a in _args(op, args))
            recorded = sum(1 for c in self._calls if c["op"] == op and list(map(_freeze, c["args"])) == list(key[1:]))
            why = (f"recorded {recorded} time(s), all replayed already" if recorded
                   else "never recorded")
            raise NotRecordedError(f"{op}({shown}) is not in the transcript ({why})")
        index, result = queue[0]
        if self.strict and index != self._next:
            expected = self._calls[self._next]
            raise NotRecordedError(f"{op}{tuple(args)!r} replayed out of order: the transcript "
                                   f"expects call {self._next} {expected['op']}{tuple(expected['args'])!r}")
        queue.popleft()
        self._next = index + 1
        self.replayed += 1
        return _decode(op, result)

    def read_port(self, port: int, size: int = 1) -> int:
        return self._answer("read_port", port, size)

    def write_port(self, port: int, value: int, size: int = 1) -> None:
        self._answer("write_port", port, value, size)

    def read_config(self, bus: int, device: int, function: int, offset: int, length: int) -> bytes:
        return self._answer("read_config", bus, device, function, offset, length)

    def write_config(self, bus: int, device: int, function: int, offset: int, data: bytes) -> None:
        self._answer("write_config", bus, device, function, offset, bytes(data))

    def read_memory(self, address: int, length: int) -> bytes:
        return self._answer("read_memory", address, length)


class ReplayDecodeBus(ReplayBus):
    """A ReplayBus whose transcript holds DecodeMap answers."""

    def pci_root_windows(self) -> dict[str, list[tuple[int, int]]]:
        return self._answer("pci_root_windows")

    def decoded_ranges(self) -> list[DecodedSpan]:
        return self._answer("decoded_ranges")

    def bar_mappings(self, bus: int, device: int, function: int) -> dict[int, tuple[int, int]]:
        return self._answer("bar_mappings", bus, device, function)


def _freeze(value: Any) -> Any:
    return tuple(_freeze(v) for v in value) if isinstance(value, list) else value


__all__ = ["RecordingBus", "RecordingDecodeBus", "ReplayBus", "ReplayDecodeBus", "NotRecordedError", "TranscriptError", "FORMAT", "VERSION"]
