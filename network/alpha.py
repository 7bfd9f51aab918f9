# Satellite "alpha" of the three-node network.
# Start it with:  co2-satellite --config network/alpha.py

plugin_list = ["example", "ham"]
listen = "tcp:2004:interface=127.0.0.1"
peers = ["tcp:host=127.0.0.1:port=2011"]      # the relay's amp_listen
spool = "var/alpha.spool"
