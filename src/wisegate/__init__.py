"""Wisegate: a self-hostable implementation of the Claude API."""

from __future__ import annotations

from wisegate.app import create_app
from wisegate.backends.base import Backend, Capabilities, ModelRoute
from wisegate.settings import Settings

__version__ = "0.1.0"
__all__ = ["Backend", "Capabilities", "ModelRoute", "Settings", "__version__", "create_app"]
