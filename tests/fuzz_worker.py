"""The child process that runs tests/test_fuzz.py's generated calls (not a test module).

Each request on stdin is a length-prefixed pickle ``(op, args)``; the reply on stdout is
``("ok", summary)`` or ``("exc", [class names of the exception's MRO], message)``. A
crash of the C extension kills only this process: the test reports the input and starts
a new worker. Devices live in the caller's network namespace (the test session's).

    python tests/fuzz_worker.py NAME_PREFIX
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
from typing import Any, Callable

import tuntap

Flags = tuntap.Flags
_devices: dict[str, tuntap.Device] = {}
PREFIX = sys.argv[1] if len(sys.argv) > 1 else "ttfz"


def device(kind: str) -> tuntap.Device:
    """One long-lived device per kind, up, non-blocking: 'tun', 'vnet' or 'tap'."""
    if kind not in _devices:
        flags = {"tun": Flags.TUN | Flags.NO_PI, "tap": Flags.TAP | Flags.NO_PI,
                 "vnet": Flags.TUN | Flags.NO_PI | Flags.VNET_HDR}[kind]
        d = tuntap.Device(f"{PREFIX}{kind}", flags, blocking=False)
        d.up()
        _devices[kind] = d
    return _devices[kind]


def make_batch(spec: tuple[int, int, int, list[bytes]]) -> tuntap.PacketBatch:
    capacity, slot_size, headroom, packets = spec
    b = tuntap.PacketBatch(capacity, slot_size, headroom=headroom)
    for p in packets[:capacity]:
        if 0 < len(p) <= slot_size:
            b.append(p)
    return b


def materialize(obj: Any) -> Any:
    """("batch", spec) -> a PacketBatch, ("mv", bytes) -> a memoryview; lists recurse."""
    if isinstance(obj, tuple) and len(obj) == 2 and obj[0] == "batch":
        return make_batch(obj[1])
    if isinstance(obj, tuple) and len(obj) == 2 and obj[0] == "mv":
        return memoryview(obj[1])
    if isinstance(obj, tuple) and len(obj) == 2 and obj[0] == "ba":
        return bytearray(obj[1])
    if isinstance(obj, list):
        return [materialize(o) for o in obj]
    if isinstance(obj, tuple) and len(obj) == 2 and obj[0] == "tuple":
        return tuple(materialize(o) for o in obj[1])
    return obj


def op_device_new(kw: dict[str, Any]) -> str:
    d = tuntap.Device(**kw)
    try:
        d.persist(False)        # flags may have asked for PERSIST: leave nothing behind
        return f"{d.name} {int(d.flags):#x}"
    finally:
        d.close()


def op_batch_new(args: tuple[Any, ...], kw: dict[str, Any]) -> str:
    b = tuntap.PacketBatch(*args, **kw)
    return f"{b.capacity}x{b.stride}"


def op_append(spec: Any, data: Any) -> str:
    b = make_batch(spec)
    b.append(materialize(data))
    i = len(b) - 1
    assert bytes(b[i]) == bytes(materialize(data)), "append stored other bytes"
    return str(len(b))


def op_read_batch(kind: str, arg: Any) -> str:
    d = device(kind)
    b = materialize(arg)
    try:
        n = d.read_batch(b)
    except BlockingIOError:
        return "empty"
    assert 0 <= n <= b.capacity and len(b) == n
    for i in range(n):
        assert len(b[i]) <= b.slot_size
    return str(n)


def op_write_batch(kind: str, arg: Any) -> str:
    d = device(kind)
    pkts = materialize(arg)
    n = d.write_batch(pkts)
    assert 0 <= n <= len(pkts)
    return str(n)


def op_segment(packet: bytes, spec: Any, kw: dict[str, Any]) -> str:
    b = make_batch(spec)
    before = [bytes(p) for p in b]
    try:
        n = tuntap.segment(packet, b, **kw)
    except ValueError:
        assert [bytes(p) for p in b] == before, "a refused packet changed the batch"
        raise
    assert 0 <= n <= b.capacity and len(b) == n
    hdr = kw.get("vnet_hdr_size", 10)
    for i in range(n):
        assert 0 < len(b[i]) <= b.slot_size
        assert len(b[i]) <= max(len(packet) - hdr, 0) + 80   # headers at most repeated
    return str(n)


def op_coalesce(packets: list[bytes], spec: Any, kw: dict[str, Any]) -> str:
    b = make_batch(spec)
    n = tuntap.coalesce(packets, b, **kw)  # type: ignore[attr-defined]
    assert 0 <= n <= b.capacity
    return str(n)


def op_vnet_parse(data: Any, size: Any) -> str:
    h = tuntap.VirtioNetHdr.parse(materialize(data), size)
    return repr(h)[:80]


def op_vnet_pack(fields: dict[str, Any], size: Any) -> str:
    h = tuntap.VirtioNetHdr(**fields)
    out = h.pack(size)
    assert len(out) == size and tuntap.VirtioNetHdr.parse(out, size) == (
        h if size >= 12 else tuntap.VirtioNetHdr(**{**fields, "num_buffers": 0}))
    return out.hex()[:40]


def op_settimeout(value: Any) -> str:
    d = device("tun")
    try:
        d.settimeout(value)
        t = d.gettimeout()
        assert t is None or t >= 0
        return repr(t)
    finally:
        d.setblocking(False)


def op_set_offload(value: Any) -> str:
    device("vnet").set_offload(value)
    device("vnet").set_offload(0)
    return "ok"


def op_address(kind: str, add: bool, cidr: Any, peer: Any) -> str:
    d = device(kind)
    if add:
        d.add_address(cidr, peer=peer)
        d.remove_address(cidr)
    else:
        d.remove_address(cidr)
    return "ok"


def op_vnet_hdr_size(value: Any) -> str:
    d = device("vnet")
    try:
        d.vnet_hdr_size = value
        assert 10 <= d.header_size <= 256
        return str(d.header_size)
    finally:
        d.vnet_hdr_size = 10


def op_selftest_crash(code: int) -> str:
    """tests/test_fuzz.py checks that a crash here is reported with its input."""
    os.kill(os.getpid(), code)
    return "unreachable"


OPS: dict[str, Callable[..., str]] = {
    name[3:]: fn for name, fn in globals().items() if name.startswith("op_")}


def main() -> None:
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = inp.read(4)
        if len(head) < 4:
            return
        op, args = pickle.loads(inp.read(struct.unpack("!I", head)[0]))
        try:
            reply: tuple[Any, ...] = ("ok", OPS[op](*args))
        except Exception as e:  # reported to the test, which judges it
            reply = ("exc", [c.__name__ for c in type(e).__mro__], str(e)[:300])
        data = pickle.dumps(reply)
        out.write(struct.pack("!I", len(data)) + data)
        out.flush()


if __name__ == "__main__":
    try:
        main()
    finally:
        for d in _devices.values():
            d.close()
        os._exit(0)
