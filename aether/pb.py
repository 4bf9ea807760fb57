"""The API messages and stubs generated from proto/ (aether.v1), under one short name.

`from aether import pb` then `pb.Session`, `pb.SessionServiceStub`, ... The code
itself lives in `aether/_gen` and is regenerated with `make proto`.
"""

from aether._gen.aether.v1 import *  # noqa: F401,F403
from aether._gen.google.protobuf import Timestamp  # noqa: F401
