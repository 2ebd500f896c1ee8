"""loopkit: closed-loop ("active") synthetic data generation for fine-tuning small language models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("loopkit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
