# co2 satellite configuration: a plain Python module.
# Relative paths are relative to this file's directory.

# Where plugin packages live (default: the shipped plugin/ directory).
plugin_dir = "plugin"

# Packages to load, in this order.
plugin_list = ["example", "ham"]

# Settings merged into the var_dict of each package's X_ classes.
plugin_config = {
    "example": {"keep": 10},
}

# The XML-RPC endpoint, as a Twisted endpoint string.
listen = "tcp:2004:interface=127.0.0.1"

log_level = "info"
