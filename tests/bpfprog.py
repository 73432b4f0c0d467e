"""Tiny eBPF and classic BPF programs for the tests, loaded with the bpf() syscall.

No toolchain: the eBPF instructions are assembled here by hand (8 bytes each,
include/uapi/linux/bpf.h: struct bpf_insn) and loaded with ``BPF_PROG_LOAD`` through
``ctypes``. Every program is a ``BPF_PROG_TYPE_SOCKET_FILTER`` that reads the packet
with the legacy ``LD_ABS`` loads, which take offsets from ``skb->data``: the IP header
on a TUN device at ``tun_net_xmit``, the Ethernet header on a TAP device.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import struct

BPF_PROG_LOAD = 5
BPF_PROG_TYPE_SOCKET_FILTER = 1
BPF_PROG_TYPE_SCHED_CLS = 3

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "armv7l": 386, "ppc64le": 361, "s390x": 351,
            "riscv64": 280, "i686": 357}

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)

# eBPF opcodes (include/uapi/linux/bpf_common.h, bpf.h)
_LD_ABS_B = 0x30     # BPF_LD | BPF_ABS | BPF_B: r0 = *(u8 *)(skb->data + imm)
_LD_ABS_H = 0x28     # BPF_LD | BPF_ABS | BPF_H: r0 = ntohs(*(u16 *)(skb->data + imm))
_LDX_W = 0x61        # BPF_LDX | BPF_MEM | BPF_W: dst = *(u32 *)(src + off)
_MOV64_X = 0xBF      # dst = src
_MOV64_K = 0xB7      # dst = imm
_JNE_K = 0x55        # if dst != imm goto pc + off
_EXIT = 0x95


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def load(insns: bytes, prog_type: int = BPF_PROG_TYPE_SOCKET_FILTER) -> int:
    """Load a program, return its fd (the caller closes it). OSError with the
    verifier's log on refusal."""
    nr = _SYS_BPF.get(platform.machine())
    if nr is None:
        raise OSError(38, f"bpf() syscall number unknown on {platform.machine()}")
    insn_buf = ctypes.create_string_buffer(insns, len(insns))
    license = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(4096)
    # union bpf_attr, the BPF_PROG_LOAD part: prog_type, insn_cnt, insns, license,
    # log_level, log_size, log_buf, kern_version, prog_flags, prog_name[16].
    attr = ctypes.create_string_buffer(struct.pack(
        "=IIQQIIQII16s", prog_type, len(insns) // 8, ctypes.addressof(insn_buf),
        ctypes.addressof(license), 1, len(log), ctypes.addressof(log), 0, 0, b"tuntap_test"))
    fd = _libc.syscall(ctypes.c_long(nr), ctypes.c_int(BPF_PROG_LOAD), attr,
                       ctypes.c_uint(len(attr.raw)))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"BPF_PROG_LOAD: {os.strerror(err)}: "
                           f"{log.value.decode(errors='replace')}")
    return int(fd)


def _udp4_dport_is(port: int, on_match: list[bytes], otherwise: list[bytes]) -> bytes:
    """r6 = skb; if IPv4 protocol is UDP and the destination port (IHL 5) is ``port``
    run ``on_match``, else ``otherwise``; each branch ends with exit."""
    tail = b"".join(otherwise)
    match = b"".join(on_match)
    skip = len(match) // 8  # jump over the match branch into `otherwise`
    return b"".join([
        _insn(_MOV64_X, dst=6, src=1),
        _insn(_LD_ABS_B, imm=9),
        _insn(_JNE_K, dst=0, off=2 + skip, imm=17),
        _insn(_LD_ABS_H, imm=22),
        _insn(_JNE_K, dst=0, off=skip, imm=port),
        match,
        tail,
    ])


def steer_udp_port(port: int, queue: int) -> bytes:
    """Steering: UDP datagrams to ``port`` go to ``queue``, everything else to 0."""
    return _udp4_dport_is(port, [_insn(_MOV64_K, imm=queue), _insn(_EXIT)],
                          [_insn(_MOV64_K, imm=0), _insn(_EXIT)])


def drop_udp_port(port: int) -> bytes:
    """Filter: drop UDP datagrams to ``port``, keep the rest whole (return skb->len)."""
    return _udp4_dport_is(port, [_insn(_MOV64_K, imm=0), _insn(_EXIT)],
                          [_insn(_LDX_W, dst=0, src=6, off=0), _insn(_EXIT)])


def return_constant(value: int) -> bytes:
    """r0 = value; exit."""
    return _insn(_MOV64_K, imm=value) + _insn(_EXIT)


# Classic BPF (include/uapi/linux/filter.h: struct sock_filter, host order) ----------

def cbpf(*insns: tuple[int, int, int, int]) -> bytes:
    return b"".join(struct.pack("=HBBI", *i) for i in insns)


# On a TAP frame: drop IPv4 UDP to `port`, accept the rest whole.
def cbpf_drop_udp_port(port: int) -> list[tuple[int, int, int, int]]:
    return [
        (0x28, 0, 0, 12),          # ldh [12]           ethertype
        (0x15, 0, 5, 0x0800),      # jeq #IPv4, next, accept
        (0x30, 0, 0, 23),          # ldb [23]           IP protocol
        (0x15, 0, 3, 17),          # jeq #UDP, next, accept
        (0x28, 0, 0, 36),          # ldh [36]           UDP destination port (IHL 5)
        (0x15, 0, 1, port),        # jeq #port, drop, accept
        (0x06, 0, 0, 0),           # drop: ret #0
        (0x06, 0, 0, 0xFFFFFFFF),  # accept: ret #-1 (whole frame)
    ]
