"""The local stand-in for Customer.io and Mavera: a real HTTP server with a synthetic workspace."""

from .config import SandboxConfig

__all__ = ["SandboxConfig"]
