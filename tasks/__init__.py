"""Tasks: one module per task, each registered with @register_task (see tasks/registry.py).

Every module in this package is imported here, so adding a task is adding one file.
"""
import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "registry" and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
