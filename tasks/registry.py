"""The one registry implementation (models and tasks both use it) and the task registry.

Built-in entries are the public modules of a package (all but its `INFRASTRUCTURE`); plugins are
Python entry points of another installed package, group `recurrent_bench.tasks` (or
`recurrent_bench.models`), whose value is the module that registers the entry:

    # pyproject.toml of your package
    [project.entry-points."recurrent_bench.tasks"]
    my_task = "my_package.my_task"       # a module with @register_task("my_task", ...)

Nothing is imported until a name is asked for. A plugin that fails to import, or does not register
the name its entry point promises, is reported by name (`Registry.problems`) and never hides the
built-ins. The registry lives at the bottom layer (tasks) so that models and bench can both use it
without an import that climbs back up.
"""
from __future__ import annotations

import ast
import importlib
import pkgutil
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable

PRESETS = ("smoke", "quick", "cpu", "paper")
# A preset may build on another: `quick` is the task's `cpu` preset (same data, model and schedule
# shape) with the task's "quick" entry on top (a shorter budget), and the models' `cpu` presets apply to it.
PRESET_BASES = {"quick": "cpu"}
OPTIONAL_PRESETS = ("quick",)   # a task without a "quick" entry runs its cpu preset unchanged


def preset_lineage(preset: str) -> list[str]:
    """The presets applied in order for a base preset: ["cpu", "quick"] for quick, ["cpu"] for cpu."""
    return [*preset_lineage(PRESET_BASES[preset]), preset] if preset in PRESET_BASES else [preset]


OMITTED_AT_DEFAULT = "omitted_from_the_hash_at_its_default"


def added_later(default: Any) -> Any:
    """A config field added after runs were recorded with the code that did not have it. At its default
    (which must reproduce the old behaviour) it is left out of the run's identity, the config hash, so
    those runs keep their hash (`--resume`, sweeps skipping finished runs); set otherwise, it counts."""
    return field(default=default, metadata={OMITTED_AT_DEFAULT: True})


class RegistryError(LookupError):
    """An unknown name, or a plugin that cannot be loaded: one line for the user."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass
class Entry:
    name: str
    cls: type
    config: type
    description: str
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)   # tasks: smoke / cpu / paper overrides
    origin: str = ""                                                    # the module that registered it


class Registry:
    def __init__(self, kind: str, package: str, group: str, decorator: str):
        self.kind, self.package, self.group = kind, package, group
        self.decorator = decorator     # the name modules register with, for `catalogue`
        self._entries: dict[str, Entry] = {}
        self._problems: dict[str, str] = {}
        self._loaded = False
        self._static_cache: dict[str, tuple[str, str]] | None = None

    def register(self, name: str, config: type, description: str,
                 presets: dict[str, dict[str, Any]] | None = None) -> Callable[[type], type]:
        def decorator(cls: type) -> type:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} registered twice ({self._entries[name].origin} and "
                                 f"{cls.__module__})")
            self._entries[name] = Entry(name, cls, config, description, dict(presets or {}), cls.__module__)
            cls.registry_name = name
            return cls

        return decorator

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        package = importlib.import_module(self.package)
        for module in pkgutil.iter_modules(package.__path__):
            if module.name not in package.INFRASTRUCTURE and not module.name.startswith("_"):
                importlib.import_module(f"{self.package}.{module.name}")
        for point in entry_points(group=self.group):
            if point.name in self._entries:
                continue
            try:
                point.load()
            except Exception as error:  # a broken plugin is reported, never fatal for the others
                self._problems[point.name] = (f"{self.kind} plugin {point.name!r} ({point.value}) failed to load: "
                                              f"{type(error).__name__}: {error}")
                continue
            if point.name not in self._entries:
                self._problems[point.name] = (f"{self.kind} plugin {point.name!r} ({point.value}) registered no "
                                              f"{self.kind} named {point.name!r}")

    @property
    def loaded(self) -> bool:
        """Whether the modules (and plugins) have been imported."""
        return self._loaded

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def get(self, name: str) -> Entry:
        static = self._static()
        if name not in self._entries and static is not None and name in static:
            importlib.import_module(static[name][1])    # only the module that registers it
        if name in self._entries:
            return self._entries[name]
        self._load()
        if name in self._entries:
            return self._entries[name]
        if name in self._problems:
            raise RegistryError(self._problems[name])
        raise RegistryError(f"unknown {self.kind} {name!r}; choose from: {', '.join(sorted(self._entries))}")

    def catalogue(self) -> list[tuple[str, str]]:
        """(name, description) of every entry. Without plugins, read from the built-in modules' source
        (their `@register_…("name", …, description="…")` calls), so listing imports neither the modules
        nor torch; with plugins, or a registration that is not literal, the modules are imported."""
        static = self._static()
        if static is not None:
            return sorted((name, description) for name, (description, _) in static.items())
        return [(name, self.get(name).description) for name in self.names()]

    def built_in(self, name: str) -> bool:
        """Whether `name` comes from the suite's own modules, read from source while no plugin is
        installed (False when plugins exist: their code is not the suite's to fingerprint)."""
        static = self._static()
        return static is not None and name in static

    def _static(self) -> dict[str, tuple[str, str]] | None:
        """{name: (description, module)} from the source, while nothing is imported and no plugin exists."""
        if self._loaded or entry_points(group=self.group):
            return None
        if self._static_cache is None:
            self._static_cache = self._literal_registrations()
        return self._static_cache

    def _literal_registrations(self) -> dict[str, tuple[str, str]] | None:
        package = importlib.import_module(self.package)
        found: dict[str, str] = {}
        for module in pkgutil.iter_modules(package.__path__):
            if module.name in package.INFRASTRUCTURE or module.name.startswith("_"):
                continue
            path = Path(package.__path__[0]) / f"{module.name}.py"
            if not path.exists():
                return None
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == self.decorator:
                    keywords = {k.arg: k.value for k in node.keywords}
                    name, description = (node.args or [None])[0], keywords.get("description")
                    if not (isinstance(name, ast.Constant) and isinstance(description, ast.Constant)):
                        return None
                    found[name.value] = (description.value, f"{self.package}.{module.name}")
        return found

    def problems(self) -> list[str]:
        """One line per plugin that could not be loaded."""
        self._load()
        return list(self._problems.values())


TASKS = Registry("task", package="tasks", group="recurrent_bench.tasks", decorator="register_task")


def register_task(name: str, config: type, description: str,
                  presets: dict[str, dict[str, Any]]) -> Callable[[type], type]:
    """`presets` maps "smoke" / "cpu" / "paper" to dotted overrides (`task.*`, `train.*`, `model.*`)."""
    missing = [p for p in PRESETS if p not in presets and p not in OPTIONAL_PRESETS]
    if missing:
        raise ValueError(f"task {name!r} lacks presets {missing}")
    return TASKS.register(name, config=config, description=description, presets=presets)


def task_names() -> list[str]:
    return TASKS.names()


def get_task_entry(name: str) -> Entry:
    return TASKS.get(name)


def create_task(name: str, **config_values):
    entry = get_task_entry(name)
    return entry.cls(entry.config(**config_values))
