"""
Routing between co2 nodes: links, outboxes, de-duplication, the method
directory, relay plugins and the standalone relay.

The routing engine is not part of this release yet: a satellite delivers
what its plugins send to the other plugins of the same satellite.
"""
