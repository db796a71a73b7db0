"""The daemon process (``synchrod run``): signals, reload, the cycle loop,
ownership of sources among daemons, the configuration watch, sd_notify."""
