"""`python -m scripts.replay_agent_requests ENV WORKLOAD FILE`: recorded requests against the workload's enforcing policy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from scripts import replay_agent_requests as replay
from scripts.offline.stackfile import STACKS_DIR
from tests.agent_requests import SEALED_NGC_KEY, create_sandbox, crio, pause, pod_container, pod_copies, policy_data
from components import nim

WORKLOAD = "llama-3-1-8b"


@pytest.fixture(scope="module")
def pinned() -> dict[str, Any]:
    """What dev's workload policy pins, read from the policy the replay renders."""
    return policy_data(replay.enforcing_policy(replay.load_trusted("dev", STACKS_DIR), WORKLOAD))["containers"][0]


def dev_nim(pinned: dict[str, Any]) -> dict[str, Any]:
    """dev's NIM container as the agent receives it: its pinned image, image environment and NGC key pointer."""
    spec = {"name": "kserve-container", "env": nim.container_env("llama-ngc-api-key", False), "volumeMounts": nim.volume_mounts()}
    return pod_container(spec, nim.volumes("llama", 40), image=f"{pinned['repository']}@{pinned['digest']}", image_env=tuple(pinned["image_env"]),
                         args=tuple(pinned["args"] or ["/opt/nim/start_server.sh"]), cwd=pinned["cwd"] or "/",
                         sealed=SEALED_NGC_KEY)


def write(tmp_path: Path, entries: list[dict[str, Any]]) -> Path:
    path = tmp_path / "requests.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return path


def run(capsys, *argv: str) -> tuple[int, list[str], str]:
    status = replay.main(list(argv))
    out, err = capsys.readouterr()
    return status, out.splitlines(), err


def test_the_pods_own_requests_replay_clean_on_both_runtimes(tmp_path, capsys, pinned):
    app = dev_nim(pinned)
    entries = [{"request": "CreateSandboxRequest", "input": create_sandbox()}]
    for shape in (lambda r: r, crio):
        for request in (shape(pause()), shape(app)):
            entries += [{"request": "CopyFileRequest", "input": c} for c in pod_copies(request)]
            entries.append({"request": "CreateContainerRequest", "input": request})
    status, out, err = run(capsys, "dev", WORKLOAD, str(write(tmp_path, entries)))
    assert (status, err) == (0, "")
    assert out == [f"{len(entries)} requests replayed against dev-trusted workload {WORKLOAD}'s enforcing policy: {len(entries)} allowed, 0 refused"]


def test_each_refused_request_is_named_with_its_field(tmp_path, capsys, pinned):
    hooked = dev_nim(pinned)
    hooked["OCI"]["Hooks"] = {"Prestart": [{"Path": "/bin/sh", "Args": ["sh"], "Env": [], "Timeout": 0}]}
    preloaded = dev_nim(pinned)
    preloaded["OCI"]["Process"]["Env"].append("LD_PRELOAD=/run/nim-tls/cert/x.so")
    entries = [{"request": "CreateContainerRequest", "input": dev_nim(pinned)},
               {"kind": "CreateContainerRequest", "request": hooked},  # the agent's own log format
               {"request": "CreateContainerRequest", "input": preloaded},
               {"request": "GetDiagnosticDataRequest", "input": {"container_id": "gid", "diagnostic_type": 0}}]
    path = write(tmp_path, entries)
    status, out, err = run(capsys, "dev", WORKLOAD, str(path))
    assert (status, err) == (1, "")
    assert out == [
        f"{path}:2: CreateContainerRequest (gid) refused: OCI.Hooks",
        f"{path}:3: CreateContainerRequest (gid) refused: OCI.Process.Env[LD_PRELOAD]",
        f"{path}:4: GetDiagnosticDataRequest (gid) refused: (refused whatever its fields)",
        f"4 requests replayed against dev-trusted workload {WORKLOAD}'s enforcing policy: 1 allowed, 3 refused",
    ]


def test_an_audit_mode_stack_replays_against_its_enforcing_policy(tmp_path, capsys, pinned):
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    trusted = stacks / "Pulumi.dev-trusted.yaml"
    shutil.copy(STACKS_DIR / trusted.name, trusted)
    trusted.write_text(trusted.read_text().replace("    allowReadStream: true\n", "    allowReadStream: true\n    mode: audit\n", 1))
    assert "mode: audit" in trusted.read_text()
    hooked = dev_nim(pinned)
    hooked["OCI"]["Hooks"] = {"Prestart": [{"Path": "/bin/sh"}]}
    status, out, _ = run(capsys, "dev", WORKLOAD, str(write(tmp_path, [{"request": "CreateContainerRequest", "input": hooked}])), "--stacks-dir", str(stacks))
    assert status == 1 and "refused: OCI.Hooks" in out[0]


@pytest.mark.parametrize("lines, message", [
    (["not json"], "requests.jsonl:1: not JSON"),
    (['{"input": {}}'], "requests.jsonl:1: not a recorded request"),
    (['{"request": "RunShellRequest", "input": {}}'], "requests.jsonl:1: 'RunShellRequest' is not a request the agent asks its policy about"),
    (['{"request": "CopyFileRequest", "input": []}'], "requests.jsonl:1: the input of CopyFileRequest is not a JSON object"),
])
def test_a_bad_recording_is_one_line_and_exit_2(tmp_path, capsys, lines, message):
    path = tmp_path / "requests.jsonl"
    path.write_text("\n".join(lines) + "\n")
    status, out, err = run(capsys, "dev", WORKLOAD, str(path))
    assert (status, out) == (2, []) and len(err.splitlines()) == 1 and message in err


def test_an_unknown_workload_is_one_line_and_exit_2(tmp_path, capsys):
    status, _, err = run(capsys, "dev", "nope", str(write(tmp_path, [])))
    assert status == 2
    assert err == "python -m scripts.replay_agent_requests: workload 'nope' is not in dev-trusted's workloads (llama-3-1-8b, mistral-7b)\n"
