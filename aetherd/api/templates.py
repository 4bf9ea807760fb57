"""Proto adapter for templates: named, durable pointers to a tree."""

from __future__ import annotations

from aether import pb
from aetherd.api.convert import ts
from aetherd.api.core import Runner
from aetherd.services.state import Store
from aetherd.services.templates import TemplateRecord, Templates


class TemplatesApi(pb.TemplateServiceBase):
    def __init__(self, store: Store, run: Runner) -> None:
        self.t, self.run = Templates(store), run

    async def create_template(self, message: pb.CreateTemplateRequest) -> pb.Template:
        rec = await self.run(
            self.t.create, message.name, description=message.description,
            labels=message.labels, session_id=message.session_id, at=message.at,
            checkpoint_id=message.checkpoint_id, commit_id=message.commit_id,
            replace=message.replace,
        )
        return template(rec)

    async def list_templates(self, message: pb.ListTemplatesRequest) -> pb.ListTemplatesResponse:
        recs, token = await self.run(self.t.list, message.labels, message.prefix,
                                     message.page_size, message.page_token)
        return pb.ListTemplatesResponse(templates=[template(r) for r in recs],
                                        next_page_token=token)

    async def get_template(self, message: pb.GetTemplateRequest) -> pb.Template:
        return template(await self.run(self.t.get, message.name))

    async def delete_template(self, message: pb.DeleteTemplateRequest) -> pb.Template:
        return template(await self.run(self.t.delete, message.name))


def template(rec: TemplateRecord) -> pb.Template:
    return pb.Template(
        name=rec.name, description=rec.description, labels=rec.labels, root_hash=rec.root,
        source_kind=rec.source_kind, source_ref=rec.source_ref,
        source_session_id=rec.source_session_id, source_at=rec.source_at,
        file_count=rec.file_count, total_bytes=rec.total_bytes, create_time=ts(rec.created_ns),
    )
