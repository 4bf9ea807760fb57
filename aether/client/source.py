"""Builders for the source a session is created from.

    from aether.client import connect, source
    client.create_session(source.git("https://example.org/repo.git", ref="main"))
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from aether import pb
from aether.client._base import archive_format


def blank() -> pb.SessionSource:
    return pb.SessionSource(blank=pb.BlankSource())


def template(name: str) -> pb.SessionSource:
    """A template by name: the session starts from its tree (shared, not copied)."""
    return pb.SessionSource(template=pb.TemplateSource(name=name))


def directory(path: str | os.PathLike[str]) -> pb.SessionSource:
    """A directory on the daemon's host (refused unless its config allows the path)."""
    return pb.SessionSource(directory=pb.DirectorySource(path=os.fspath(path)))


def archive(data: bytes, format: str | pb.ArchiveFormat | None = None) -> pb.SessionSource:
    """Archive bytes (tar, tar.gz or zip; detected from the content when format is None)."""
    return pb.SessionSource(archive=pb.ArchiveSource(data=data, format=archive_format(format)))


def git(url: str, ref: str = "") -> pb.SessionSource:
    """A git repository reachable from the daemon's host (path or URL); ref defaults to HEAD."""
    return pb.SessionSource(git=pb.GitSource(url=url, ref=ref))


def commit(commit_id: str) -> pb.SessionSource:
    return pb.SessionSource(commit=pb.CommitSource(commit_id=commit_id))


def checkpoint(checkpoint_id: str) -> pb.SessionSource:
    return pb.SessionSource(checkpoint=pb.CheckpointSource(checkpoint_id=checkpoint_id))


def session(session_id: str) -> pb.SessionSource:
    return pb.SessionSource(session=pb.SessionRef(session_id=session_id))


def pack_directory(path: str | os.PathLike[str]) -> bytes:
    """A local directory as tar.gz bytes (contents at the archive root), for
    creating a session from it on a daemon that cannot see this host."""
    root = Path(path)
    if not root.is_dir():
        raise NotADirectoryError(f"not a directory: {root}")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for dirpath, dirnames, filenames in os.walk(root):  # symlinks are not followed
            dirnames.sort()
            for name in dirnames + sorted(filenames):
                entry = Path(dirpath, name)
                tar.add(entry, arcname=entry.relative_to(root).as_posix(), recursive=False)
    return buf.getvalue()
