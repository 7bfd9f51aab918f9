"""
The plugin host: finds and loads plugin packages, registers their methods,
delivers messages to them and serves XML-RPC for them.
"""

from satellites._dispatch import Dispatcher
from satellites._errors import SatelliteError
from satellites._http import HTTPFactory
from satellites._loader import LoadedPackage, PackageInfo, PluginLoader, find_packages
from satellites._registry import Method, MethodRegistry
from satellites._routes import make_server
from satellites._satellite import ReloadRefused, Satellite
from satellites._service import ListenError, SatelliteService, StrictLoadError

__all__ = [
    "Dispatcher",
    "HTTPFactory",
    "ListenError",
    "LoadedPackage",
    "Method",
    "MethodRegistry",
    "PackageInfo",
    "PluginLoader",
    "ReloadRefused",
    "Satellite",
    "SatelliteError",
    "SatelliteService",
    "StrictLoadError",
    "find_packages",
    "make_server",
]
