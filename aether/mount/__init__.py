"""`aether mount`: a session as a local directory (FUSE, pyfuse3 on trio).

    runner.py     the mount process: lifecycle, options, state reporting
    ops.py        the FUSE handlers (pyfuse3.Operations)
    inodes.py     the inode table: nodes, lookup counts, readdir cookies, forget
    handles.py    open files, staging of changed content, write-back, conflicts
    cache.py      the local content cache, keyed by content hash, LRU-bounded
    coherence.py  session events -> refreshed directories -> kernel invalidations
    xattrs.py     user.aether.* attributes
    bridge.py     the only module that talks to the daemon (the SDK's AsyncClient)
    state.py      state files for `aether mounts` / `aether umount` (light: no FUSE)

Only state.py may be imported by the CLI without a mount running; everything
else imports pyfuse3 and trio.
"""
