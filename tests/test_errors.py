"""Every documented error (README, docstrings), with the exact exception class, errno and
message. Where the kernel decides, docs/kernel.md says why it answers as it does."""

from __future__ import annotations

import errno
import os
import re
import select
import threading
import time

import pytest

import tuntap
from netutil import WAIT, ip, libc_write, link_exists, poll_events, unique_name

# The I/O part of the suite: every test runs on both batch backends (conftest.io_backend).
pytestmark = [pytest.mark.needs_tun, pytest.mark.usefixtures("io_backend")]

MISSING = "/nonexistent-dir/net/tun"


def test_missing_device_node_is_file_not_found():
    with pytest.raises(FileNotFoundError) as ei:
        tuntap.Device(unique_name(), path=MISSING)
    assert ei.value.errno == errno.ENOENT


TOO_LONG = "bytes long; the limit is 15"  # the kernel would cut the name at 15 bytes
BAD_CHAR = "must not contain NUL, '/', ':' or whitespace"


@pytest.mark.parametrize("name, msg", [
    ("a" * 16, TOO_LONG),
    ("abcdefghijklmnopqrstuvwxyz", TOO_LONG),
    ("é" * 8, TOO_LONG),  # 16 bytes in UTF-8
    ("a/b", BAD_CHAR),
    ("a b", BAD_CHAR),
    ("a\tb", BAD_CHAR),
    ("a\nb", BAD_CHAR),
    ("a\0b", BAD_CHAR),
    ("a:b", BAD_CHAR),
    (".", "is not allowed"),
    ("..", "is not allowed"),
])
def test_bad_name_is_value_error_before_any_syscall(name, msg):
    # With a missing device node, a check done after open() would raise FileNotFoundError.
    with pytest.raises(ValueError, match=re.escape(msg)):
        tuntap.Device(name, path=MISSING)
    with pytest.raises(ValueError, match=re.escape(msg)):
        tuntap.Device(name)


def test_fifteen_byte_name_is_accepted(open_device):
    name = unique_name()[:3] + "x" * 12
    assert len(name) == 15
    dev = open_device(name)
    assert dev.name == name
    assert link_exists(name)


def test_name_of_wrong_type_is_type_error():
    with pytest.raises(TypeError):
        tuntap.Device(b"tun0", path=MISSING)
    with pytest.raises(TypeError):
        tuntap.Device(42, path=MISSING)


@pytest.mark.parametrize("flags", [
    0,
    tuntap.Flags.NO_PI,
    tuntap.Flags.MULTI_QUEUE | tuntap.Flags.NO_PI,
    tuntap.Flags.TUN | tuntap.Flags.TAP,  # the kernel would silently make a TUN
])
def test_flags_without_exactly_one_of_tun_or_tap_is_value_error(flags):
    with pytest.raises(ValueError, match="^flags must include exactly one of TUN or TAP$"):
        tuntap.Device(unique_name(), flags, path=MISSING)


@pytest.mark.parametrize("bit", [1 << 16, 1 << 20, 0x0004, 0x0400])
def test_unknown_flag_bits_are_value_error(bit):
    # The kernel ignores bits it does not know; the library refuses them.
    with pytest.raises(ValueError, match=f"^unknown flag bits {bit:#x}$"):
        tuntap.Device(unique_name(), tuntap.Flags.TUN | bit, path=MISSING)


def test_name_with_two_templates_is_the_kernels_einval():
    # net/core/dev.c: __dev_alloc_name accepts one %d only.
    with pytest.raises(OSError) as ei:
        tuntap.Device("tt%d%d")
    assert type(ei.value) is OSError and ei.value.errno == errno.EINVAL
    assert "ioctl(TUNSETIFF) on 'tt%d%d'" in str(ei.value)


def test_flags_of_wrong_type_is_type_error():
    with pytest.raises(TypeError):
        tuntap.Device(unique_name(), "TUN", path=MISSING)


def test_existing_device_of_the_other_type_keeps_kernel_errno(open_device):
    tun = open_device(unique_name())
    with pytest.raises(OSError) as ei:
        tuntap.Device(tun.name, tuntap.Flags.TAP | tuntap.Flags.NO_PI)
    assert ei.value.errno == errno.EINVAL
    assert type(ei.value) is OSError
    msg = str(ei.value)
    assert "TUNSETIFF" in msg and f"'{tun.name}'" in msg


def test_multi_queue_mismatch_keeps_kernel_errno(open_device):
    tun = open_device(unique_name())
    with pytest.raises(OSError) as ei:
        tuntap.Device(tun.name, tuntap.Flags.TUN | tuntap.Flags.NO_PI
                      | tuntap.Flags.MULTI_QUEUE)
    assert ei.value.errno == errno.EINVAL


def test_attaching_to_a_non_tun_interface_is_einval():
    with pytest.raises(OSError) as ei:
        tuntap.Device("lo")
    assert ei.value.errno == errno.EINVAL
    assert "'lo'" in str(ei.value)


def test_second_fd_on_a_single_queue_device_is_ebusy(open_device):
    dev = open_device(unique_name())
    with pytest.raises(OSError) as ei:
        tuntap.Device(dev.name)
    assert ei.value.errno == errno.EBUSY
    assert dev.name in str(ei.value)


def test_tun_excl_on_an_existing_name_is_file_exists_error(open_device):
    dev = open_device(unique_name())
    with pytest.raises(FileExistsError) as ei:
        tuntap.Device(dev.name, tuntap.Flags.TUN | tuntap.Flags.NO_PI | tuntap.Flags.TUN_EXCL)
    assert dev.name in str(ei.value)


def test_tun_excl_on_a_new_name_creates_it(open_device):
    name = unique_name()
    dev = open_device(name, tuntap.Flags.TUN | tuntap.Flags.NO_PI | tuntap.Flags.TUN_EXCL)
    assert dev.name == name
    assert link_exists(name)


def test_nonblocking_read_with_nothing_queued_is_blocking_io_error(open_device):
    dev = open_device(unique_name(), blocking=False)
    with pytest.raises(BlockingIOError) as ei:
        dev.readinto(bytearray(100))
    assert ei.value.errno == errno.EAGAIN


def test_read_past_timeout_is_timeout_error(open_device):
    dev = open_device(unique_name())
    dev.settimeout(0.05)
    with pytest.raises(TimeoutError):
        dev.read()


@pytest.mark.parametrize("buf", [b"x" * 100, bytes(10), memoryview(b"abc" * 40), "string",
                                 123, None, memoryview(bytearray(100)).toreadonly()])
def test_readinto_read_only_or_non_buffer_is_type_error(open_device, buf):
    dev = open_device(unique_name())
    with pytest.raises(TypeError):
        dev.readinto(buf)


@pytest.mark.parametrize("data", ["text", 42, None, [1, 2, 3]])
def test_write_of_non_bytes_is_type_error(open_device, data):
    dev = open_device(unique_name())
    with pytest.raises(TypeError):
        dev.write(data)


@pytest.mark.parametrize("size", ["10", 1.5, None])
def test_read_size_of_wrong_type_is_type_error(open_device, size):
    dev = open_device(unique_name())
    with pytest.raises(TypeError):
        dev.read(size)


def test_readinto_empty_buffer_is_value_error(open_device):
    dev = open_device(unique_name())
    with pytest.raises(ValueError, match=r"^readinto\(\) buffer is empty$"):
        dev.readinto(bytearray())
    with pytest.raises(ValueError, match=r"^readinto\(\) buffer is empty$"):
        dev.readinto(memoryview(bytearray(10))[5:5])


@pytest.mark.parametrize("size", [-1, -65536])
def test_read_negative_size_is_value_error(open_device, size):
    dev = open_device(unique_name())
    with pytest.raises(ValueError, match=re.escape(f"read() size must be positive, not {size}")):
        dev.read(size)


def test_write_of_malformed_packet_keeps_kernel_errno_and_names_device(tun):
    # TUN + NO_PI: the kernel checks the IP version nibble only (docs/kernel.md, "Writes").
    with pytest.raises(OSError) as ei:
        tun.dev.write(b"\x00" * 40)
    assert ei.value.errno == errno.EINVAL
    msg = str(ei.value)
    assert f"'{tun.name}'" in msg and "write" in msg


def test_write_while_interface_is_down_is_eio(tun):
    tun.dev.down()
    assert not tun.dev.is_up
    with pytest.raises(OSError) as ei:
        tun.dev.write(bytes.fromhex("45000014000000004011") + bytes(10))
    assert ei.value.errno == errno.EIO
    assert tun.name in str(ei.value)
    tun.dev.up()
    assert tun.dev.write(bytes.fromhex("4500001c0000400040110000") + bytes(16)) == 28


def test_read_after_interface_deleted_says_so(tun):
    tun.dev.settimeout(WAIT)
    ip("link", "del", "dev", tun.name)
    assert not link_exists(tun.name)
    # The file is unattached now: the kernel says EBADFD (docs/kernel.md, "Deleting the interface").
    with pytest.raises(OSError) as ei:
        tun.dev.read()
    assert type(ei.value) is OSError and ei.value.errno == errno.EBADFD
    assert str(ei.value).endswith(f"read() on '{tun.name}' (the interface was deleted)")
    with pytest.raises(OSError) as ei:
        tun.dev.write(b"\x45" + bytes(27))
    assert type(ei.value) is OSError and ei.value.errno == errno.EBADFD
    assert str(ei.value).endswith(f"write() on '{tun.name}' (the interface was deleted)")


def test_blocked_reader_is_woken_when_interface_deleted(tun):
    result: dict = {}

    def reader() -> None:
        try:
            result["n"] = tun.dev.read()
        except BaseException as e:
            result["exc"] = e

    tun.dev.settimeout(5)
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    time.sleep(0.15)
    assert t.is_alive()
    ip("link", "del", "dev", tun.name)
    t.join(WAIT)
    assert not t.is_alive(), "reader not woken by deletion"
    exc = result.get("exc")
    # The library waits in poll(), not in read(): deletion wakes the poll (POLLERR) and
    # the read that follows gets EBADFD, never the EFAULT a blocked read() would get.
    assert type(exc) is OSError, result
    assert exc.errno == errno.EBADFD
    assert "(the interface was deleted)" in str(exc)


def test_kernel_wakes_a_raw_read_blocked_on_a_deleted_interface_with_efault(tun):
    """What the kernel does to a thread blocked in read(2) when the interface is deleted
    (drivers/net/tun.c: tun_detach_all, tun_ring_recv): EFAULT; the file is then
    unattached, so read/write give EBADFD and poll POLLERR. The library never blocks in
    read(2), so it only ever sees EBADFD (the tests above)."""
    fd = tun.dev.detach()
    try:
        os.set_blocking(fd, True)
        result: dict = {}

        def reader() -> None:
            try:
                result["data"] = os.read(fd, 2048)
            except OSError as e:
                result["exc"] = e

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        time.sleep(0.15)
        assert t.is_alive(), result
        ip("link", "del", "dev", tun.name)
        t.join(WAIT)
        assert not t.is_alive(), "the blocked read(2) was not woken by the deletion"
        assert result["exc"].errno == errno.EFAULT, result
        for call in (lambda: os.read(fd, 2048), lambda: os.write(fd, b"\x45" + bytes(27))):
            with pytest.raises(OSError) as ei:
                call()
            assert ei.value.errno == errno.EBADFD
        assert poll_events(fd) == select.POLLERR
    finally:
        os.close(fd)


def test_write_of_an_empty_packet_is_value_error(tun):
    # write(fd, buf, 0) is the kernel's EINVAL, and an empty writev its 0 (the VFS returns
    # before the driver): neither says anything useful, so the library refuses first.
    with pytest.raises(OSError) as ei:
        libc_write(tun.dev.fileno(), b"")
    assert ei.value.errno == errno.EINVAL
    assert os.writev(tun.dev.fileno(), [b""]) == 0
    for empty in (b"", bytearray(), memoryview(b"abc")[3:]):
        with pytest.raises(ValueError, match=r"^write\(\) of an empty packet$"):
            tun.dev.write(empty)


def test_error_message_names_syscall_and_interface(open_device):
    dev = open_device(unique_name())
    with pytest.raises(OSError) as ei:
        tuntap.Device(dev.name, tuntap.Flags.TAP | tuntap.Flags.NO_PI)
    e = ei.value
    assert str(e).startswith(f"[Errno {errno.EINVAL}] ")
    assert f"ioctl(TUNSETIFF) on '{dev.name}'" in str(e)

