"""The model diagram, built from a base's blocks() + sites() and the census; never drawn per base."""

from .scene import DiagramInfo, DiagramScene
from .view import DiagramView

__all__ = ["DiagramInfo", "DiagramScene", "DiagramView"]
