"""Read Ansible inventories (static, directory or dynamic) and resolve host patterns."""

from .errors import InventoryError, PatternError
from .model import Group, Host, Inventory
from .sources import default_inventory, load_inventory

__all__ = [
    "Group",
    "Host",
    "Inventory",
    "InventoryError",
    "PatternError",
    "default_inventory",
    "load_inventory",
]
