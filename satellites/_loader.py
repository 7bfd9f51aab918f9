"""
Finding and loading plugin packages.

Loading follows the co2 plugin API's stages: import the package, import
every module named in its ``__all__``, create each ``X_`` subclass of
``Co2Plugin`` defined in those modules, and collect the ``x_`` methods of
those instances and the ``x_`` functions of the modules.

Each plugin directory is imported under a private parent package, never
from ``sys.path``: a plugin package named ``json`` does not hide the
standard library's, and two satellites in one process keep their plugins
apart.  Plugin modules import their siblings relatively (``from . import
util``).

A package is imported anew for a hot reload inside
:meth:`PluginLoader.fresh_modules`: its modules leave ``sys.modules`` for
the time of the import, which compiles them from their source files (not
from ``__pycache__``, whose timestamps cannot tell two edits made within
one second apart), and come back if the reload fails.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.abc
import importlib.machinery
import itertools
import os
import sys
import traceback
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from twisted.logger import Logger
from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

from co2._errors import PluginError
from co2._plugin import Co2Plugin, ICo2Plugin, IPluginHost, PluginSite, attached_to
from satellites._registry import Method

__all__ = ["LoadedPackage", "PackageInfo", "PluginLoader", "find_packages", "fingerprint"]

_log = Logger(namespace="co2.loader")
_namespaces = itertools.count(1)


@dataclass(frozen=True)
class PackageInfo:
    """A plugin package found in a plugin directory (not imported)."""

    name: str
    path: str
    description: str


@dataclass
class LoadedPackage:
    """What loading one package produced, in load order."""

    name: str
    plugins: list[Co2Plugin] = field(default_factory=list)
    methods: list[Method] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _description(init_path: str) -> str:
    try:
        with open(init_path, "rb") as f:
            tree = ast.parse(f.read(), init_path)
    except (OSError, SyntaxError, ValueError) as e:
        return f"(unreadable: {type(e).__name__})"
    doc = ast.get_docstring(tree) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def find_packages(plugin_dir: str) -> list[PackageInfo]:
    """
    The plugin packages in ``plugin_dir``, sorted by name, with the first
    line of each one's docstring.  Nothing is imported.
    """
    found = []
    for name in sorted(os.listdir(plugin_dir)):
        init = os.path.join(plugin_dir, name, "__init__.py")
        if name.isidentifier() and not name.startswith("_") and os.path.isfile(init):
            found.append(PackageInfo(name, os.path.dirname(init), _description(init)))
    return found


def fingerprint(package_dir: str) -> str:
    """
    A digest of the ``.py`` files under ``package_dir`` (their paths and
    contents, ``__pycache__`` left out): it changes when any of them is
    edited, added or removed.  A missing directory has a digest too.
    """
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(package_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(root, name)
            try:
                with open(path, "rb") as f:
                    content = hashlib.sha256(f.read()).digest()
            except OSError:
                content = b"unreadable"
            digest.update(os.path.relpath(path, package_dir).encode(errors="replace") + b"\0" + content)
    return digest.hexdigest()


class _SourceOnlyLoader(importlib.machinery.SourceFileLoader):
    """Compiles a module from its source file, never from a cached ``.pyc``."""

    def get_code(self, fullname: str) -> types.CodeType:
        path = self.get_filename(fullname)
        return self.source_to_code(self.get_data(path), path)


class _FreshFinder(importlib.abc.MetaPathFinder):
    """Finds the modules under ``prefix`` as usual, to be loaded by :class:`_SourceOnlyLoader`."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.prefix and not fullname.startswith(self.prefix + "."):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is not None and type(spec.loader) is importlib.machinery.SourceFileLoader:
            spec.loader = _SourceOnlyLoader(spec.loader.name, spec.loader.path)
        return spec


def _defined_in(module: types.ModuleType, value: object) -> bool:
    return getattr(value, "__module__", None) == module.__name__


def _plugin_classes(module: types.ModuleType) -> list[type[Co2Plugin]]:
    return [
        value
        for name, value in vars(module).items()
        if name.startswith("X_")
        and isinstance(value, type)
        and issubclass(value, Co2Plugin)
        and _defined_in(module, value)
    ]


def _module_functions(module: types.ModuleType) -> list[tuple[str, Callable[..., Any]]]:
    return [
        (name, value)
        for name, value in vars(module).items()
        if name.startswith("x_") and callable(value) and not isinstance(value, type)
        and _defined_in(module, value)
    ]


class PluginLoader:
    """
    Loads plugin packages from one directory for one host.

    ``var_dict_for(package)`` gives the settings each ``X_`` class of that
    package is created with.
    """

    def __init__(
        self,
        plugin_dir: str,
        host: IPluginHost,
        var_dict_for: Callable[[str], Mapping[str, Any]],
    ) -> None:
        self.plugin_dir = plugin_dir
        self._host = host
        self._var_dict_for = var_dict_for
        self._namespace = f"_co2_plugins_{next(_namespaces)}"
        parent = types.ModuleType(self._namespace, f"co2 plugins from {plugin_dir}")
        parent.__path__ = [plugin_dir]
        sys.modules[self._namespace] = parent

    def forget(self) -> None:
        """Drop every module this loader imported from ``sys.modules``."""
        prefix = self._namespace + "."
        for name in [n for n in sys.modules if n == self._namespace or n.startswith(prefix)]:
            del sys.modules[name]

    def _modules_of(self, package: str) -> dict[str, types.ModuleType]:
        top = f"{self._namespace}.{package}"
        return {n: m for n, m in sys.modules.items() if n == top or n.startswith(top + ".")}

    @contextmanager
    def fresh_modules(self, package: str) -> Iterator[None]:
        """
        Make :meth:`load` in the block import ``package`` anew, from its
        source files: new module objects, while the previous ones (which
        the running plugins use) stay as they are.  If the block raises,
        the previous modules are put back, so nothing has changed.
        """
        previous = self._modules_of(package)
        parent = sys.modules[self._namespace]
        attribute = getattr(parent, package, None)
        for name in previous:
            del sys.modules[name]
        importlib.invalidate_caches()  # see files added since the last import
        finder = _FreshFinder(f"{self._namespace}.{package}")
        sys.meta_path.insert(0, finder)
        try:
            yield
        except BaseException:
            for name in self._modules_of(package):
                del sys.modules[name]
            sys.modules.update(previous)
            if attribute is not None:
                setattr(parent, package, attribute)
            elif hasattr(parent, package):
                delattr(parent, package)
            raise
        finally:
            sys.meta_path.remove(finder)

    def load(self, package: str) -> LoadedPackage:
        """
        Load ``package`` whole, or raise :class:`co2.PluginError` (with the
        traceback in ``details``) and leave nothing of it running: plugins
        already created are given their ``__exit__``.
        """
        loaded = LoadedPackage(package)
        try:
            self._load_into(loaded)
        except PluginError:
            self.exit_all(loaded.plugins)
            raise
        return loaded

    def _import(self, package: str, dotted: str, what: str) -> types.ModuleType:
        try:
            return importlib.import_module(f"{self._namespace}.{dotted}")
        except (Exception, SystemExit) as e:
            raise PluginError(
                package, f"{what} failed to import: {type(e).__name__}: {e}",
                traceback.format_exc(),
            ) from None

    def _load_into(self, loaded: LoadedPackage) -> None:
        package = loaded.name
        if not os.path.isfile(os.path.join(self.plugin_dir, package, "__init__.py")):
            raise PluginError(package, f"no package {package!r} in {self.plugin_dir}")
        top = self._import(package, package, "the package")
        names = getattr(top, "__all__", None)
        if names is None:
            loaded.warnings.append(f"{package} has no __all__, so none of its modules load")
            return
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            raise PluginError(package, "__all__ must be a list of module names")
        seen: dict[str, str] = {}
        for name in names:
            if not name.isidentifier():
                raise PluginError(package, f"__all__ names {name!r}, which is not a module name")
            module = self._import(package, f"{package}.{name}", f"module {name!r}")
            self._load_module(loaded, name, module, seen)

    def _load_module(
        self, loaded: LoadedPackage, name: str, module: types.ModuleType, seen: dict[str, str]
    ) -> None:
        package = loaded.name

        def expose(attribute: str, function: Callable[..., Any], origin: str) -> None:
            public = f"{package}.{name}.{attribute[2:]}"
            if not attribute[2:]:
                raise PluginError(package, f"{origin} has no name after 'x_'")
            if public in seen:
                raise PluginError(
                    package, f"{seen[public]} and {origin} are both exposed as {public}"
                )
            seen[public] = origin
            loaded.methods.append(Method.of(public, function, owner=package))

        for cls in _plugin_classes(module):
            instance = self._create(package, name, cls)
            loaded.plugins.append(instance)
            for attribute in dir(cls):
                if attribute.startswith("x_"):
                    bound = getattr(instance, attribute)
                    if callable(bound):
                        expose(attribute, bound, f"{cls.__name__}.{attribute}")
        for attribute, function in _module_functions(module):
            expose(attribute, function, f"{name}.{attribute}")

    def _create(self, package: str, module: str, cls: type[Co2Plugin]) -> Co2Plugin:
        what = f"{package}.{module}.{cls.__name__}"
        try:
            with attached_to(PluginSite(self._host, package, module)):
                instance = cls(dict(self._var_dict_for(package)))
        except (Exception, SystemExit) as e:
            raise PluginError(
                package, f"{what}() raised {type(e).__name__}: {e}", traceback.format_exc()
            ) from None
        if getattr(instance, "_co2_site", None) is None:
            raise PluginError(package, f"{what}.__init__ does not call Co2Plugin.__init__")
        try:
            verifyObject(ICo2Plugin, instance)
        except Invalid as e:
            raise PluginError(package, f"{what} is not a usable plugin: {e}") from None
        return instance

    def exit_all(self, plugins: list[Co2Plugin]) -> None:
        """Call each plugin's ``__exit__``, last first, logging what raises."""
        for plugin in reversed(plugins):
            try:
                plugin.__exit__()
            except (Exception, SystemExit):
                _log.failure("{plugin}.__exit__ raised while unloading", plugin=plugin)
