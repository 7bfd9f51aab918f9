"""
The plugin host and the front end: finds and loads plugin packages,
registers their methods, delivers messages to them, serves XML-RPC and
the node's pages, and puts a node's service tree together.
"""

from co2._services import ListenError
from satellites._dispatch import Dispatcher
from satellites._errors import SatelliteError
from satellites._http import HTTPFactory
from satellites._loader import LoadedPackage, PackageInfo, PluginLoader, find_packages
from satellites._registry import Method, MethodRegistry
from satellites._routes import make_server
from satellites._satellite import ReloadRefused, Satellite
from satellites._service import HostService, NodeParts, StrictLoadError, node_service
from satellites._settings import (
    Config,
    FrontSettings,
    HostSettings,
    ManholeSettings,
    load_config,
    make_config,
)

__all__ = [
    "Config",
    "Dispatcher",
    "FrontSettings",
    "HTTPFactory",
    "HostService",
    "HostSettings",
    "ListenError",
    "LoadedPackage",
    "ManholeSettings",
    "Method",
    "MethodRegistry",
    "NodeParts",
    "PackageInfo",
    "PluginLoader",
    "ReloadRefused",
    "Satellite",
    "SatelliteError",
    "StrictLoadError",
    "find_packages",
    "load_config",
    "make_config",
    "make_server",
    "node_service",
]
