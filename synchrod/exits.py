"""Exit statuses (sysexits.h where one fits)."""
OK = 0
FAILED = 1          # some calls failed / some check failed
USAGE = 64          # EX_USAGE
UNAVAILABLE = 69    # EX_UNAVAILABLE: the target database cannot be reached
SOFTWARE = 70       # EX_SOFTWARE
TEMPFAIL = 75       # EX_TEMPFAIL: busy now, try again later (an archive task running)
CONFIG = 78         # EX_CONFIG
