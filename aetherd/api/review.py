"""Proto adapter for the review service (being implemented; unimplemented RPCs answer UNIMPLEMENTED)."""

from __future__ import annotations

from aether import pb
from aetherd.api.core import Runner
from aetherd.services.state import Store


class ReviewApi(pb.ReviewServiceBase):
    def __init__(self, store: Store, run: Runner) -> None:
        self.store, self.run = store, run
