"""A second, independent client: the official grpcio package with stubs that
grpcio-tools generates from proto/ at test time. If the daemon drifted from the
contract in proto/, this is where it shows."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import grpc
import grpc_tools
import pytest
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    # Our own package is also called `aether`, so the protos are compiled under
    # a `grpcio_side/` root: module names change, the wire names
    # (/aether.v1.SessionService/...) do not.
    out = tmp_path_factory.mktemp("grpcio_stubs")
    src = out / "protos"
    for proto in (ROOT / "proto").rglob("*.proto"):
        dest = src / "grpcio_side" / proto.relative_to(ROOT / "proto")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(proto.read_text().replace('import "aether/', 'import "grpcio_side/aether/'))
    protos = sorted(str(p.relative_to(src)) for p in src.rglob("*.proto"))
    wkt = Path(grpc_tools.__file__).parent / "_proto"
    rc = protoc.main(["protoc", f"-I{src}", f"-I{wkt}", f"--python_out={out}",
                      f"--grpc_python_out={out}", *protos])
    assert rc == 0
    sys.path.insert(0, str(out))
    try:
        return {name: importlib.import_module(f"grpcio_side.aether.v1.{name}")
                for name in ("sessions_pb2", "sessions_pb2_grpc", "files_pb2", "files_pb2_grpc",
                             "persistence_pb2", "persistence_pb2_grpc")}
    finally:
        sys.path.remove(str(out))


def test_grpcio_round_trip(daemon, stubs):
    md = (("authorization", f"Bearer {daemon.token}"),)
    with grpc.insecure_channel(f"127.0.0.1:{daemon.grpc_port}") as ch:
        sessions = stubs["sessions_pb2_grpc"].SessionServiceStub(ch)
        files = stubs["files_pb2_grpc"].FileServiceStub(ch)
        persistence = stubs["persistence_pb2_grpc"].PersistenceServiceStub(ch)
        S, F, P = stubs["sessions_pb2"], stubs["files_pb2"], stubs["persistence_pb2"]

        s = sessions.CreateSession(S.CreateSessionRequest(name="grpcio", labels={"via": "grpcio"}),
                                   metadata=md)
        assert s.id.startswith("ses_") and s.state == S.SESSION_STATE_ACTIVE
        info = files.WriteFile(F.WriteFileRequest(session_id=s.id, path="src/hello.txt",
                                                  data=b"hi from grpcio\n", create_parents=True),
                               metadata=md)
        assert info.size == 15 and info.kind == F.ENTRY_KIND_FILE
        got = files.ReadFile(F.ReadFileRequest(session_id=s.id, path="src/hello.txt"), metadata=md)
        assert got.data == b"hi from grpcio\n" and got.hash == info.hash
        ck = persistence.CreateCheckpoint(P.CreateCheckpointRequest(session_id=s.id, message="c"),
                                          metadata=md)
        assert ck.id.startswith("ckp_") and ck.file_count == 1
        chunks = list(persistence.Export(P.ExportRequest(session_id=s.id), metadata=md))
        assert sum(len(c.data) for c in chunks) > 0

        with pytest.raises(grpc.RpcError) as err:
            sessions.GetSession(S.GetSessionRequest(session_id="ses_" + "a" * 26), metadata=md)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert ("aether-error-code", "not_found") in err.value.trailing_metadata()

        with pytest.raises(grpc.RpcError) as err:
            sessions.GetSession(S.GetSessionRequest(session_id=s.id))  # no token
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert ("aether-error-code", "unauthenticated") in err.value.trailing_metadata()
