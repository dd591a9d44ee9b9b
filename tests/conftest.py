"""Shared fixtures: run a stack program under fresh mocks, example configs and plans, upstream CRD schemas."""

from __future__ import annotations

import atexit
import datetime
import fcntl
import functools
import gc
import hashlib
import json
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.offline import StackRun, run_stack
from scripts.offline.fakes import StackOutputs
from scripts.offline.stackfile import StackFile, read_stack_file, stack_path
from scripts.plan import plan_environment, reads_bundle, with_bundle
from stacks.config import clock

SHARED = Path(__file__).resolve().parents[2] / "shared"
CRDS = SHARED / "crds"
# The day every test judges config at (expiry dates), so no test depends on the calendar.
AS_OF = datetime.date(2026, 12, 6)


@pytest.fixture(scope="session", autouse=True)
def _config_judged_as_of_a_fixed_day() -> Iterator[None]:
    with clock.as_of(AS_OF):
        yield


def pytest_collection_finish(session: pytest.Session) -> None:
    """What collection imported lives as long as the process: kept out of the collector's full passes, which
    otherwise rescan it each time (about a sixth of the suite's collector time)."""
    gc.collect()
    gc.freeze()


def example_config(stack: str, set: dict[str, Any] | None = None, delete: tuple[str, ...] = ()) -> tuple[dict[str, str], tuple[str, ...]]:
    """The config of `stacks/Pulumi.<stack>.yaml` (secure values as placeholders), with edits.

    Paths are dotted key paths without the project prefix: `peerPods.instanceSizes`, `kbs.url`.
    """
    stack_file = _example_stack_file(stack, stack_path(stack).read_text())
    tree: dict[str, Any] = {}
    for key, value in stack_file.config.items():
        tree[key] = json.loads(value) if value[:1] in "{[" else value
    prefix = "confidential-ai:"
    for path, value in (set or {}).items():
        parent, leaf = _walk(tree, prefix + path, create=True)
        parent[leaf] = value
    for path in delete:
        parent, leaf = _walk(tree, prefix + path, create=False)
        del parent[leaf]
    config = {k: v if isinstance(v, str) else json.dumps(v) for k, v in tree.items()}
    return config, tuple(stack_file.secret_keys)


@functools.lru_cache(maxsize=16)
def _example_stack_file(stack: str, text: str) -> StackFile:
    """A stack file parsed once per content (fuzz tests ask for the same one hundreds of times); read-only."""
    return read_stack_file(stack)


def _walk(tree: dict[str, Any], path: str, create: bool) -> tuple[Any, str | int]:
    namespace, rest = path.split(":", 1)
    parts = rest.split(".")
    node: Any = tree
    key = f"{namespace}:{parts[0]}"
    for part in parts[1:]:
        if create and isinstance(node, dict) and key not in node:
            node[key] = {}
        node = node[key]
        key = int(part) if isinstance(node, list) else part
    return node, key


class Runner:
    """Runs one stack under fresh mocks per call (new event loop, settings, root resource).

    A run with the same stack, config, secret keys and stack outputs as an earlier one in this worker
    runs once (`memo`); every call returns its own copy, so a test cannot change what another sees.
    """

    def __init__(self, memo: dict[str, bytes] | None = None):
        self.memo = memo

    def __call__(self, stack: str, config: dict[str, str], secret_keys: tuple[str, ...] = (), stack_outputs: dict[str, StackOutputs] | None = None) -> StackRun:
        if self.memo is None:
            return run_stack(stack, config, secret_keys, stack_outputs)
        references = {name: [outputs.values, sorted(outputs.secret_names)] for name, outputs in (stack_outputs or {}).items()}
        key = json.dumps([stack, config, sorted(secret_keys), references], sort_keys=True, default=str)
        if key not in self.memo:
            self.memo[key] = pickle.dumps(run_stack(stack, config, secret_keys, stack_outputs))
        return pickle.loads(self.memo[key])

    def example(self, stack: str, set: dict[str, Any] | None = None, delete: tuple[str, ...] = (), stack_outputs: dict[str, StackOutputs] | None = None) -> StackRun:
        """A cloud stack sees its trusted stack's example run (or `stack_outputs`): through the StackReference,
        or, when its config reads a trust bundle, as the bundle that run signed for it (as scripts.plan hands it)."""
        config, secret_keys = example_config(stack, set, delete)
        if stack_outputs is None and stack.endswith("-cloud"):
            trusted = stack.split("-", 1)[0] + "-trusted"
            stack_outputs = {trusted: self.example(trusted).stack_outputs}
        if reads_bundle(config):
            bundles = [outputs.values.get("trustBundles", {}).get(stack) for outputs in (stack_outputs or {}).values()]
            config = handed_bundle(config, next((b for b in bundles if b), ""))
        return self(stack, config, secret_keys, stack_outputs)


_HANDED = Path(tempfile.mkdtemp(prefix="trust-bundles-"))
atexit.register(shutil.rmtree, _HANDED, True)


def handed_bundle(config: dict[str, str], token: str) -> dict[str, str]:
    """`config` reading `token` from a file named by its content (so equal runs share a memo entry)."""
    path = _HANDED / f"{hashlib.sha256(token.encode()).hexdigest()[:16]}.jws"
    path.write_text(token)
    return with_bundle(config, path)


@pytest.fixture(scope="session")
def _runs_memo() -> dict[str, bytes]:
    return {}


@pytest.fixture
def runner(request: pytest.FixtureRequest, _runs_memo: dict[str, bytes]) -> Runner:
    # What a test monkeypatches may change the run: such a test runs every stack afresh.
    return Runner(None if "monkeypatch" in request.fixturenames else _runs_memo)


_PLANS: dict[str, bytes] = {}
_SHARED_PLANS: list[Path] = []
"""Under pytest-xdist: a directory of the run where its workers share plans (the first to ask plans)."""


@pytest.fixture(scope="session", autouse=True)
def _plans_shared_between_workers(tmp_path_factory: pytest.TempPathFactory) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # basetemp is per worker; its parent is the run's (pytest-xdist's documented pattern for this).
        directory = tmp_path_factory.getbasetemp().parent / "example-plans"
        directory.mkdir(exist_ok=True)
        _SHARED_PLANS[:] = [directory]


def _planned_in_this_run(key: str, plan: Callable[[], bytes]) -> bytes:
    if not _SHARED_PLANS:
        return plan()
    path = _SHARED_PLANS[0] / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.pickle"
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            path.with_suffix(".partial").write_bytes(plan())
            path.with_suffix(".partial").replace(path)
        return path.read_bytes()


def plan_once(env: str, secret_values: dict[str, dict[str, str]] | None = None) -> list[StackRun]:
    """`plan_environment` of the example stack files, planned once per test run (shared by its xdist
    workers). Each call returns its own copy (a read-only baseline)."""
    key = json.dumps([env, secret_values], sort_keys=True)
    if key not in _PLANS:
        _PLANS[key] = _planned_in_this_run(key, lambda: pickle.dumps(plan_environment(env, secret_values=secret_values)))
    return pickle.loads(_PLANS[key])


@pytest.fixture(scope="session")
def example_plan() -> Callable[..., list[StackRun]]:
    """`example_plan(env, secret_values=None)`: `plan_once` as a fixture."""
    return plan_once


def _without_nulls(schema: Any) -> Any:
    """Drop keywords set to null (openshift/api's Route CRD has `anyOf: null`), which jsonschema cannot read."""
    if isinstance(schema, dict):
        return {k: _without_nulls(v) for k, v in schema.items() if v is not None}
    if isinstance(schema, list):
        return [_without_nulls(v) for v in schema]
    return schema


class CrdSchemas(Mapping[tuple[str, str], dict[str, Any]]):
    """(apiVersion, kind) -> openAPIV3Schema of the upstream CRDs in `directory`, each file parsed the first
    time one of its kinds is asked for (5 MB of YAML, most of it for kinds no test reads).

    Files are named `<group>_<plural>.yaml`: a lookup reads its group's files, the kind's own first, and
    every other file before it answers that a kind is missing.
    """

    def __init__(self, directory: Path):
        self._unread = sorted(directory.glob("*.yaml"))
        self._schemas: dict[tuple[str, str], dict[str, Any]] = {}

    def _read(self, path: Path) -> None:
        self._unread.remove(path)
        for doc in yaml.load_all(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                self._schemas[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = version["schema"]["openAPIV3Schema"]

    def __getitem__(self, key: tuple[str, str]) -> dict[str, Any]:
        api_version, kind = key
        group = api_version.rsplit("/", 1)[0]
        same_group = [p for p in self._unread if p.name.startswith(f"{group}_")]
        likeliest = sorted(same_group, key=lambda p: not p.stem.split("_", 1)[1].startswith(kind.lower()))
        for path in [*likeliest, *(p for p in self._unread if p not in same_group)]:
            if key in self._schemas:
                break
            self._read(path)
        return self._schemas[key]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for path in list(self._unread):
            self._read(path)
        return iter(self._schemas)

    def __len__(self) -> int:
        return sum(1 for _ in self)


@pytest.fixture(scope="session")
def crd_schemas() -> CrdSchemas:
    """(apiVersion, kind) -> openAPIV3Schema of every upstream CRD version in shared/crds."""
    if not CRDS.is_dir():
        pytest.skip(f"upstream CRDs not found at {CRDS} (clone outside the workspace)")
    return CrdSchemas(CRDS)


@pytest.fixture(scope="session")
def crd_validator(crd_schemas):
    """validate(manifest) -> list of schema errors, against the upstream CRD serving its kind."""
    import jsonschema

    schemas = crd_schemas

    def validate(manifest: dict[str, Any]) -> list[str]:
        schema = schemas.get((manifest["apiVersion"], manifest["kind"]))
        if schema is None:
            return [f"no upstream CRD for {manifest['apiVersion']} {manifest['kind']}"]
        validator = jsonschema.Draft7Validator(_without_nulls(schema))
        return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(manifest)]

    return validate


# --- Agent policies (tests/test_agent_policy*.py): one per module that asks for it ---------------------


@pytest.fixture(scope="module")
def ngc_policy():
    """An NGC model's workload, process and working directory pinned as pin_workload writes them."""
    from tests.agent_requests import NIM_ARGS, NIM_WORKING_DIR
    from tests.test_agent_policy import Policy

    return Policy(args=NIM_ARGS, working_dir=NIM_WORKING_DIR)


@pytest.fixture(scope="module")
def encrypted_policy():
    """A workload with an encrypted model: the pod also runs the decryptor."""
    from components import nim
    from components.initdata import DecryptorPolicy
    from tests.agent_requests import DECRYPTOR, KEY_URI, MANIFEST, NIM_ARGS, NIM_WORKING_DIR
    from tests.test_agent_policy import Policy

    return Policy(args=NIM_ARGS, working_dir=NIM_WORKING_DIR, decryptor=DecryptorPolicy(DECRYPTOR, KEY_URI, MANIFEST),
                  container=nim.policy_container(None, False, True))
