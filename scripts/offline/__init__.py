"""Run the real stack program under Pulumi's mock runtime and capture everything it registers.

Used by the offline plan (`scripts.plan`) and by the tests' `run_stack` fixture. Each run gets a
fresh event loop, fresh runtime settings and a fresh root resource, so runs never leak into each other.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.runtime import MockResourceArgs, rpc
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import resource as pulumi_resource
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime.proto.source_pb2 import StackTrace
from pulumi.runtime.config import set_all_config
from pulumi.runtime.stack import run_pulumi_func

from scripts.offline.fakes import OfflineMocks, StackOutputs

PROJECT = "confidential-ai"
SECRET = "[secret]"
# Wire sentinels of the Pulumi property protocol (pulumi/pulumi sdk/python/lib/pulumi/runtime/rpc.py).
_SIG_KEY = "4dabf18193072939515e22adb298388d"
_SIG_SECRET = "1b47061264138c4ac30d75fd1eb44270"
_SIG_RESOURCE = "5cf8f73096256a8f31e491e813e4eb8e"
_UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


@dataclass(frozen=True)
class Secret:
    """A value the program marked secret, as it crossed the wire."""

    value: Any


@dataclass
class Registered:
    """One resource registration, with everything `pulumi preview` would know about it."""

    urn: str
    type: str
    name: str
    custom: bool
    parent: str
    provider: str
    depends_on: list[str]
    protect: bool
    raw_inputs: dict[str, Any]
    additional_secret_outputs: list[str] = field(default_factory=list)
    id: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def inputs(self) -> dict[str, Any]:
        """Inputs with secrets unwrapped: what the provider would receive."""
        return plain(self.raw_inputs)

    @property
    def redacted_inputs(self) -> dict[str, Any]:
        """Inputs with every secret shown as "[secret]": what may be written or logged."""
        return redacted(self.raw_inputs)

    def is_secret(self, *path: str | int) -> bool:
        value: Any = self.raw_inputs
        for part in path:
            if isinstance(value, Secret):
                return True
            value = value[part]
        return isinstance(value, Secret)


@dataclass
class StackRun:
    stack: str
    resources: list[Registered]
    outputs: dict[str, Any]
    secret_outputs: frozenset[str]
    warnings: list[str] = field(default_factory=list)
    """What the program logged with `pulumi.log.warn`, in order: `pulumi up` shows the same lines."""
    notes: list[str] = field(default_factory=list)
    """What it logged with `pulumi.log.info`: choices the config declares on purpose (a relaxation in dev)."""

    def of_type(self, type_: str) -> list[Registered]:
        return [r for r in self.resources if r.type == type_]

    def named(self, name: str, type_: str | None = None) -> Registered:
        found = [r for r in self.resources if r.name == name and (type_ is None or r.type == type_)]
        if len(found) != 1:
            raise KeyError(f"{len(found)} resources named {name!r} of type {type_ or 'any'}")
        return found[0]

    def by_urn(self, urn: str) -> Registered:
        return next(r for r in self.resources if r.urn == urn)

    @property
    def stack_outputs(self) -> StackOutputs:
        return StackOutputs(dict(self.outputs), self.secret_outputs)


def plain(value: Any) -> Any:
    if isinstance(value, Secret):
        return plain(value.value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def redacted(value: Any) -> Any:
    if isinstance(value, Secret):
        return SECRET
    if isinstance(value, dict):
        return {k: redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return value


def _decode_wire(value: Any) -> Any:
    if isinstance(value, dict):
        sig = value.get(_SIG_KEY)
        if sig == _SIG_SECRET:
            return Secret(_decode_wire(value.get("value")))
        if sig == _SIG_RESOURCE:
            return value.get("urn")
        return {k: _decode_wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_wire(v) for v in value]
    if value == _UNKNOWN:
        return "[unknown]"
    # The wire (protobuf Struct) carries every number as a double; integers were integers.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _plain_wire(value: Any) -> bool:
    """Whether deserialized properties hold only what serializes back to the same Struct: no secret,
    asset or resource reference (a dict with the signature key, or an object), no unknown."""
    if isinstance(value, dict):
        return _SIG_KEY not in value and all(_plain_wire(v) for v in value.values())
    if isinstance(value, list):
        return all(_plain_wire(v) for v in value)
    if isinstance(value, str):
        return value != _UNKNOWN
    return value is None or type(value) in (bool, float)


class _DiagnosticRecorder(logging.Handler):
    """Collects what the mock engine logs at WARNING (pulumi.log.warn) and INFO (pulumi.log.info) for one run."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.warnings: list[str] = []
        self.notes: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno == logging.WARNING:
            self.warnings.append(record.getMessage())
        elif record.levelno == logging.INFO:
            self.notes.append(record.getMessage())


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The SDK's mock monitor, also keeping each request's parent, provider, dependencies and options."""

    def __init__(self, mocks: OfflineMocks):
        super().__init__(mocks)
        self.registrations: list[Registered] = []

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        # Children of the root stack carry no parent type in their URN, as in a real deployment.
        if parent.split("::")[2:3] == ["pulumi:pulumi:Stack"]:
            parent = ""
        return super().make_urn(parent, type_, name)

    def RegisterResource(self, request):  # noqa: N802 (gRPC method name)
        """The SDK's `MockMonitor.RegisterResource` (pulumi/pulumi sdk/python/lib/pulumi/runtime/mocks.py),
        but a state that echoes plain inputs (what most fakes return) is answered with the request's own
        properties: serializing it again would give what the program reads the same (scripts.bench: about
        3 ms of CPU per model)."""
        if request.type == "pulumi:pulumi:Stack":
            return super().RegisterResource(request)
        urn = self.make_urn(request.parent, request.type, request.name)
        pulumi_mocks._ensure_event_loop()
        inputs = rpc.deserialize_properties(request.object)
        id_, state = self.mocks.new_resource(MockResourceArgs(
            typ=request.type,
            name=request.name,
            inputs=inputs,
            provider=request.provider,
            resource_id=request.importId,
            custom=request.custom or False,
            transforms=pulumi_mocks._resolve_callbacks(request.transforms),
        ))
        # The request's Struct may also hold nulls, which the program's side drops when it reads the answer.
        echoed = state == inputs and _plain_wire(inputs)
        properties = request.object if echoed else pulumi_mocks._sync_await(rpc.serialize_properties(state, {}))
        self.resources[urn] = pulumi_mocks.MockMonitor.ResourceRegistration(urn, id_, state)
        self._record(request, urn, id_, custom=request.custom, protect=request.protect)
        return resource_pb2.RegisterResourceResponse(urn=urn, id=id_, object=properties)

    def ReadResource(self, request):  # noqa: N802
        response = super().ReadResource(request)
        self._record(request, response.urn, request.id, custom=True, protect=False)
        return response

    def _record(self, request, urn: str, id_: str, *, custom: bool, protect: bool) -> None:
        struct = request.object if hasattr(request, "object") and request.HasField("object") else request.properties
        inputs = _decode_wire(json_format.MessageToDict(struct, preserving_proto_field_name=True))
        registration = self.resources.get(urn)
        self.registrations.append(
            Registered(
                urn=urn,
                type=request.type,
                name=request.name,
                custom=custom,
                parent=request.parent,
                provider=request.provider.rsplit("::", 1)[0] if request.provider else "",
                depends_on=sorted(set(getattr(request, "dependencies", []))),
                protect=bool(protect),
                raw_inputs=inputs,
                additional_secret_outputs=sorted(getattr(request, "additionalSecretOutputs", [])),
                id=id_,
                outputs=dict(registration.state) if registration else {},
            )
        )


def run_stack(
    stack: str,
    config: Mapping[str, str],
    secret_keys: tuple[str, ...] | frozenset[str] = (),
    stack_outputs: Mapping[str, StackOutputs] | None = None,
    program: Callable[[], None] | None = None,
) -> StackRun:
    """Run `program` (default: the toolkit's stack program) for `stack` with `config` under mocks.

    `config` keys without a namespace belong to the project; values are strings, JSON for objects.
    `stack_outputs` answers StackReferences by stack name. Exceptions of the program propagate
    after the runtime has drained, carrying what was registered before the failure as `.registered`.
    """
    if program is None:
        from stacks.program import main as program

    def full(key: str) -> str:
        return key if ":" in key else f"{PROJECT}:{key}"

    loop = _MonitorLoop()
    asyncio.set_event_loop(loop)
    with collector_paused(), _without_stack_traces(), _monitor_awaits_here():
        try:
            pulumi_settings.set_root_resource(None)
            set_all_config({full(k): v for k, v in config.items()}, [full(k) for k in secret_keys])
            mocks = OfflineMocks(stack_outputs or {})
            monitor = RecordingMonitor(mocks)
            diagnostics = _DiagnosticRecorder()
            # A level of its own: the SDK's debug lines are then dropped before a record is made.
            logger = logging.Logger(f"{PROJECT}.offline.{stack}", logging.INFO)
            logger.addHandler(diagnostics)
            pulumi_mocks.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, logger=logger, monitor=monitor)
            try:
                loop.run_until_complete(run_pulumi_func(program))
            except Exception as err:
                err.registered = list(monitor.registrations)  # type: ignore[attr-defined]
                raise
            outputs, secret_names = loop.run_until_complete(_resolve_outputs())
        finally:
            pulumi_settings.set_root_resource(None)
            set_all_config({}, [])
            _close(loop)
            asyncio.set_event_loop(None)
    resources = sorted(monitor.registrations, key=lambda r: r.urn)
    return StackRun(stack, resources, outputs, frozenset(secret_names), diagnostics.warnings, diagnostics.notes)


class _MonitorLoop(asyncio.SelectorEventLoop):
    """An event loop that calls the mock monitor on its own thread, where the SDK hands every monitor
    call to the default executor (pulumi/pulumi sdk/python/lib/pulumi/runtime/resource.py, `do_rpc_call`;
    settings.py, invoke.py, stack.py likewise). A gRPC monitor blocks on the network there; the mock
    monitor answers at once, and in an executor thread it paid a thread hop per call and shared the GIL
    with the busy program thread: a TLS fake using 0.25-0.5 ms of CPU took 2.6-4.4 ms, every GIL release
    (the loop's wake-up socket, cryptography's signing) waiting for that thread to yield. Here: about
    3 ms less CPU per model (scripts.bench). What the call raises, the awaiting task raises, as before."""

    def run_in_executor(self, executor, func, *args):  # type: ignore[no-untyped-def]
        if executor is not None:
            return super().run_in_executor(executor, func, *args)
        future = self.create_future()
        try:
            future.set_result(func(*args))
        except Exception as err:  # noqa: BLE001 (handed to the awaiting task, as the executor did)
            future.set_exception(err)
        return future


@contextmanager
def _monitor_awaits_here() -> Iterator[None]:
    """The mock monitor awaits the SDK's serialization with `_sync_await`, which pumps the event loop of
    the calling thread (pulumi/pulumi sdk/python/lib/pulumi/runtime/sync_await.py). Called on the program's
    thread (`_MonitorLoop`), that would run other tasks in the middle of a registration; what it serializes
    (plain values the fakes return) never waits, so the coroutine is run to its end here. One that does
    wait (a resource reference in a fake's state) is left to the SDK's `_sync_await`."""
    original = pulumi_mocks._sync_await

    def run_here(awaitable):  # type: ignore[no-untyped-def]
        if not inspect.iscoroutine(awaitable):
            return original(awaitable)
        try:
            waits_on = awaitable.send(None)
        except StopIteration as done:
            return done.value
        return original(_Resumed(awaitable, waits_on))

    pulumi_mocks._sync_await = run_here
    try:
        yield
    finally:
        pulumi_mocks._sync_await = original


class _Resumed:
    """An awaitable continuing a coroutine that has already run to its first wait on `waits_on`."""

    def __init__(self, coroutine: Any, waits_on: Any):
        self.coroutine, self.waits_on = coroutine, waits_on

    def __await__(self):  # type: ignore[no-untyped-def]
        waits_on = self.waits_on
        while True:
            try:
                sent = yield waits_on
            except BaseException as err:  # noqa: BLE001 (thrown into the coroutine, as a task would)
                try:
                    waits_on = self.coroutine.throw(err)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    waits_on = self.coroutine.send(sent)
                except StopIteration as done:
                    return done.value


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is still pending on `loop`, let it finish, then close the loop."""
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()


@contextmanager
def _without_stack_traces() -> Iterator[None]:
    """Registrations carry no stack trace: the engine uses it to point errors at the program's source
    lines and the offline monitor reads none, while the SDK walks the whole Python stack for each
    resource to build it (pulumi/pulumi sdk/python/lib/pulumi/runtime/resource.py `_get_stack_trace`;
    scripts.bench: about 3% of a plan). An empty trace is what the SDK itself sends when it finds none."""
    original = pulumi_resource._get_stack_trace
    pulumi_resource._get_stack_trace = StackTrace
    try:
        yield
    finally:
        pulumi_resource._get_stack_trace = original


@contextmanager
def collector_paused() -> Iterator[None]:
    """No garbage-collector passes inside: a run allocates tens of thousands of objects that live until
    it ends, so each pass during registration rescans them and frees almost nothing (scripts.bench:
    about a tenth of a plan's CPU). The pass after it ends collects the run's cycles once."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def _resolve_outputs() -> tuple[dict[str, Any], set[str]]:
    root = pulumi_settings.get_root_resource()
    values: dict[str, Any] = {}
    secrets: set[str] = set()
    for name, value in sorted(root.outputs.items()):
        output = pulumi.Output.from_input(value)
        values[name] = json.loads(json.dumps(await output.future(with_unknowns=True), default=str))
        if await output.is_secret():
            secrets.add(name)
    return values, secrets
