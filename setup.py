"""Build the compiled kernels (BAM counting, segmentation); everything else lives in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "plasmacount._bamkernel",
            sources=["src/plasmacount/_bamkernel.c"],
            extra_compile_args=["-O3", "-std=c99", "-D_GNU_SOURCE"],
            extra_link_args=["-pthread"],
        ),
        Extension(
            "plasmacount._segmentkernel",
            sources=["src/plasmacount/_segmentkernel.c"],
            extra_compile_args=["-O3", "-std=c99"],
        ),
    ]
)
