"""twistd plugins: ``twistd co2-satellite`` (and, once it exists, ``co2-relay``)."""

from twisted.application.service import ServiceMaker

co2_satellite = ServiceMaker(
    "co2 satellite",
    "satellites._cli",
    "A co2 satellite: hosts plugin packages and serves their methods over XML-RPC.",
    "co2-satellite",
)
