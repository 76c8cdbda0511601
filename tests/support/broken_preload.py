"""A module whose import fails as a broken shared library does (OSError, not ImportError).

Only the engine fork server's test imports it, through the server's preload list.
"""

raise OSError("libbroken.so: cannot open shared object file")
