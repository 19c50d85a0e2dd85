import hashlib

from svdq_edge.artifact.digest import file_sha256, folder_sha256


def test_folder_digest_names_every_file_by_relative_path_and_follows_content(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.onnx").write_bytes(b"x" * 3_000_000)  # more than one read chunk
    (tmp_path / "sub" / "b.json").write_text("{}")
    d = folder_sha256(tmp_path)
    assert d == {"a.onnx": hashlib.sha256(b"x" * 3_000_000).hexdigest(),
                 "sub/b.json": hashlib.sha256(b"{}").hexdigest()}
    (tmp_path / "sub" / "b.json").write_text("{ }")
    assert folder_sha256(tmp_path)["sub/b.json"] != d["sub/b.json"]
    assert file_sha256(tmp_path / "a.onnx") == d["a.onnx"]
