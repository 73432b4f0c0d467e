"""Build the ttl_forward extension against the installed tuntap (see pyproject.toml)."""

from Cython.Build import cythonize
from setuptools import Extension, setup

import tuntap

setup(
    ext_modules=cythonize(
        [
            Extension(
                "ttl_forward",
                ["ttl_forward.pyx"],
                # tuntap/capi.h for the C compiler; Cython finds tuntap/capi.pxd there too.
                include_dirs=[tuntap.get_include()],
            )
        ],
        include_path=[tuntap.get_include()],
        compiler_directives={"language_level": 3},
    )
)
