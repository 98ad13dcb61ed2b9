"""Models: one file per model, each registered with @register_model (see models/registry.py).

Every module in this package is imported here, so adding a model is adding one file.
"""
import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("registry", "blocks") and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
