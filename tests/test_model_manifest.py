"""The encrypted model's manifest (`model_crypto.manifest`): what `parse` refuses, one rule per input.

Each bad manifest below breaks exactly one rule and is otherwise what `Manifest.to_bytes` writes, so a
refusal can only come from the rule it names (the last check, canonical form, would accept it).
"""

from __future__ import annotations

import json
import re

import pytest

from model_crypto import manifest

KEY_RESOURCE = "kbs:///default/model-decryption/key.bin"
SHA = "0" * 64


def _written(*files: tuple[object, object, object], env: object = "dev", workload: object = "w", key_resource: object = KEY_RESOURCE) -> bytes:
    """The bytes `Manifest.to_bytes` writes for these fields, valid or not (the dataclasses check nothing)."""
    return manifest.Manifest(env, workload, key_resource, tuple(manifest.ModelFile(*f) for f in files)).to_bytes()  # type: ignore[arg-type]


def _edited(edit) -> bytes:
    """A valid manifest's JSON after `edit`, written as `to_bytes` lays it out (indent 2, newline)."""
    document = json.loads(_written(("a.bin", 1, SHA)))
    edit(document)
    return (json.dumps(document, indent=2) + "\n").encode()


def test_manifest_refuses_paths_that_escape_and_non_canonical_text():
    good = manifest.Manifest("dev", "w", KEY_RESOURCE, (manifest.ModelFile("a.bin", 1, "0" * 64),))
    assert manifest.parse(good.to_bytes()) == good
    for path in ("../etc/passwd", "/abs", "a/./b", "manifest.json", "a//b"):
        bad = manifest.Manifest("dev", "w", KEY_RESOURCE, (manifest.ModelFile(path, 1, "0" * 64),))
        with pytest.raises(manifest.ManifestError, match=r"files\[0\]\.path"):
            manifest.parse(bad.to_bytes())
    with pytest.raises(manifest.ManifestError, match="canonical"):
        manifest.parse(json.dumps(json.loads(good.to_bytes())).encode())


@pytest.mark.parametrize("path, problem", [
    pytest.param("", "must be a normalized relative path", id="empty"),
    pytest.param(".", "must be a normalized relative path", id="the-target-itself"),
    pytest.param("..", "must be a normalized relative path", id="parent"),
    pytest.param("a/../b", "must be a normalized relative path", id="parent-inside"),
    pytest.param("//abs", "must be a normalized relative path", id="double-slash-absolute"),
    pytest.param("a/", "must be a normalized relative path", id="trailing-slash"),
    pytest.param("manifest.json.jwe", "is reserved for the manifest (manifest.json, manifest.json.jwe)", id="reserved"),
    pytest.param("sub/.w.bin.partial", "has an unprintable or reserved (.partial) name", id="partial"),
    pytest.param("w\n.bin", "has an unprintable or reserved (.partial) name", id="newline"),
])
def test_a_path_that_cannot_name_a_model_file(path, problem):
    """`.` would make the target directory itself the file, its partial file a sibling of the target."""
    assert manifest.check_path(path) == problem


@pytest.mark.parametrize("path", ["w.bin", "sub/dir/w.bin", ".keep", "a..b", "w.partial", ".w.partial.bin"])
def test_a_path_that_names_a_model_file(path):
    assert manifest.check_path(path) is None


def test_an_empty_file_is_a_file():
    """Size 0 is valid: the manifest records an empty file (nothing stored; the decryptor creates it)."""
    assert manifest.parse(_written(("a.bin", 0, SHA))).files == (manifest.ModelFile("a.bin", 0, SHA),)


@pytest.mark.parametrize("data, problem", [
    pytest.param(b"\xff\xfe", "is not JSON", id="not-utf8"),
    pytest.param(b"[]\n", "format: must be 'confidential-ai/encrypted-model/v1'", id="not-an-object"),
    pytest.param(_edited(lambda d: d.update(format="confidential-ai/encrypted-model/v2")),
                 "format: must be 'confidential-ai/encrypted-model/v1'", id="other-format"),
    pytest.param(_written(("a.bin", 1, SHA), env=7), "env: must be a non-empty string", id="env-not-a-string"),
    pytest.param(_written(("a.bin", 1, SHA), workload=""), "workload: must be a non-empty string", id="workload-empty"),
    pytest.param(_written(("a.bin", 1, SHA), key_resource="kbs:///default/model-key"),
                 "keyResource: must be kbs:///<repo>/<type>/<tag>", id="key-resource-two-segments"),
    pytest.param(_edited(lambda d: d.update(files={"a.bin": d["files"][0]})), "files: must be a non-empty list", id="files-an-object"),
    pytest.param(_written(), "files: must be a non-empty list", id="no-files"),
    pytest.param(_edited(lambda d: d.update(files=["a.bin"])), "files[0]: must be an object", id="file-not-an-object"),
    pytest.param(_edited(lambda d: d["files"][0].update(path=7)), "files[0].path: must be a string", id="path-not-a-string"),
    pytest.param(_written(("a.bin", True, SHA)), "files[0].size: must be a non-negative integer", id="size-true"),
    pytest.param(_written(("a.bin", 1.0, SHA)), "files[0].size: must be a non-negative integer", id="size-float"),
    pytest.param(_edited(lambda d: d["files"][0].update(size="1")), "files[0].size: must be a non-negative integer", id="size-string"),
    pytest.param(_written(("a.bin", -1, SHA)), "files[0].size: must be a non-negative integer", id="size-negative"),
    pytest.param(_written(("a.bin", 1, 7)), "files[0].sha256: must be 64 lowercase hex digits", id="sha256-not-a-string"),
    pytest.param(_written(("a.bin", 1, "A" * 64)), "files[0].sha256: must be 64 lowercase hex digits", id="sha256-uppercase"),
    pytest.param(_written(("b.bin", 1, SHA), ("a.bin", 1, SHA)), "files: paths must be unique and sorted", id="unsorted"),
    pytest.param(_written(("a.bin", 1, SHA), ("a.bin", 1, SHA)), "files: paths must be unique and sorted", id="duplicate"),
    pytest.param(_written(("a", 1, SHA), ("a/b.bin", 1, SHA)), "files: a is both a file and a directory", id="file-and-directory"),
])
def test_a_manifest_breaking_one_rule_is_refused_by_that_rule(data, problem):
    with pytest.raises(manifest.ManifestError, match=f"^{re.escape(problem)}$"):
        manifest.parse(data)
