"""synchrod: consolidates call recordings from CallREC recorders (sources) onto one
replay database (target); this package root owns only the version."""
__version__ = "0.1.0"
