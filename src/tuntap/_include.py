"""Where the C API is installed: ``tuntap/capi.h`` and the Cython ``tuntap/capi.pxd``."""

from __future__ import annotations

import os


def get_include() -> str:
    """Return the directory that holds ``tuntap/capi.h``.

    Put it on the compiler's include path (``include_dirs=[tuntap.get_include()]`` in
    setuptools) and write ``#include <tuntap/capi.h>``. Cython finds ``tuntap/capi.pxd``
    on ``sys.path`` by itself (``from tuntap cimport capi``); its ``cdef extern`` needs the
    same include directory for the C compiler.

    Returns
    -------
    str
        The directory containing the installed ``tuntap`` package.
    """
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
