"""Build the C extension; all metadata lives in pyproject.toml.

Switches (environment variables):
  TUNTAP_DEBUG=1     -O0 -g3, asserts on
  TUNTAP_SANITIZE=1  AddressSanitizer + UndefinedBehaviorSanitizer, every finding fatal
                     (tools/test_sanitized.sh runs the suite against it)
  TUNTAP_WERROR=1    -Werror (CI builds with it)
"""
import glob
import os

from setuptools import Extension, setup

# -fvisibility=hidden: the units call each other directly, not through the PLT (only
# PyInit__tuntap is exported; PyMODINIT_FUNC marks it visible).
extra_compile_args = ["-Wall", "-Wextra", "-std=c11", "-fvisibility=hidden"]
extra_link_args = []
undef_macros = []
if os.environ.get("TUNTAP_WERROR"):
    extra_compile_args.append("-Werror")
if os.environ.get("TUNTAP_DEBUG"):
    extra_compile_args += ["-O0", "-g3"]
    undef_macros.append("NDEBUG")
if os.environ.get("TUNTAP_SANITIZE"):
    # Every UBSan finding is fatal (no recovery), like every ASan one.
    flags = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all",
             "-fno-omit-frame-pointer", "-g"]
    extra_compile_args += flags
    extra_link_args += flags

setup(
    ext_modules=[
        Extension(
            "tuntap._tuntap",
            # The module entry first, then every unit beside it (docs/design.md).
            ["src/_tuntap.c"] + sorted(set(glob.glob("src/*.c")) - {"src/_tuntap.c"}),
            depends=sorted(glob.glob("src/*.h")) + ["src/tuntap/capi.h"],
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
            undef_macros=undef_macros,
        )
    ]
)
