# A standalone relay: the hub of the three-node network.
# Start it with:  co2-relay --config network/relay.py

listen = "tcp:2010:interface=127.0.0.1"       # classic XML-RPC notify and method calls
amp_listen = "tcp:2011:interface=127.0.0.1"   # AMP links from the satellites
spool = "var/relay.spool"                     # what it owes survives a restart
