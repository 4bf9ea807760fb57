"""Which extended attributes a session stores: shared by the daemon, which
enforces them (aetherd/services/xattr_names.py), and the mount, which checks
them at the setxattr call so that a refusal is that call's error.

Only the `user.` namespace, as an unprivileged process may set on Linux;
`user.aether.` is reserved for the attributes a mount computes. Sizes are
Linux's (XATTR_NAME_MAX, XATTR_SIZE_MAX), and one path holds at most
MAX_TOTAL bytes of names and values, so that a tree object stays small.
"""

PREFIX = "user."
RESERVED = "user.aether."
MAX_NAME_BYTES = 255
MAX_VALUE_BYTES = 64 * 1024
MAX_TOTAL = 64 * 1024
