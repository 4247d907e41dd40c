"""The Mavera client's resource namespaces, one module each (as `client.personas`)."""

from .chat import Chat
from .focus_groups import FocusGroups
from .generations import Generations
from .mave import Mave
from .personas import Personas
from .responses import Responses
from .usage import Usage
from .workspaces import Workspaces

__all__ = ["Chat", "FocusGroups", "Generations", "Mave", "Personas", "Responses", "Usage",
           "Workspaces"]
