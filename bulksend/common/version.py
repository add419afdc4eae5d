"""bulksend's version: one place, read by the package face, the CLI's --version and the User-Agent."""

__version__ = "0.1.0"
