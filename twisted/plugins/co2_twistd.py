"""twistd plugins: ``twistd co2-satellite`` and ``twistd co2-relay``."""

from twisted.application.service import ServiceMaker

co2_satellite = ServiceMaker(
    "co2 satellite",
    "satellites._cli",
    "A co2 satellite: hosts plugin packages and serves their methods over XML-RPC.",
    "co2-satellite",
)

co2_relay = ServiceMaker(
    "co2 relay",
    "satellites._relay_command",
    "A standalone co2 relay: links satellites and relays, passing messages and calls on.",
    "co2-relay",
)
