"""Run the real stack program under Pulumi's mock runtime and capture everything it registers.

Used by the offline plan (`scripts.plan`) and by the tests' `run_stack` fixture. Each run gets a
fresh event loop, fresh runtime settings and a fresh root resource, so runs never leak into each other.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings
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


class _WarningRecorder(logging.Handler):
    """Collects the messages the mock engine logs at WARNING (pulumi.log.warn) for one run."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno == logging.WARNING:
            self.messages.append(record.getMessage())


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
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self._record(request, response.urn, response.id, custom=request.custom, protect=request.protect)
        return response

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

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    # The mock monitor runs in the loop's executor threads and gives each thread an event loop of its
    # own (pulumi sdk/python/lib/pulumi/runtime/mocks.py, `_ensure_event_loop`). Left alone, those loops
    # are closed by the garbage collector at interpreter exit, where their teardown can print a
    # traceback; here each run owns its threads' loops and closes them.
    thread_loops: list[asyncio.AbstractEventLoop] = []
    executor = ThreadPoolExecutor(thread_name_prefix=f"mock-monitor-{stack}", initializer=_thread_event_loop, initargs=(thread_loops,))
    loop.set_default_executor(executor)
    try:
        pulumi_settings.set_root_resource(None)
        set_all_config({full(k): v for k, v in config.items()}, [full(k) for k in secret_keys])
        mocks = OfflineMocks(stack_outputs or {})
        monitor = RecordingMonitor(mocks)
        warnings = _WarningRecorder()
        logger = logging.Logger(f"{PROJECT}.offline.{stack}")
        logger.addHandler(warnings)
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
        executor.shutdown(wait=True)
        for each in (*thread_loops, loop):
            _close(each)
        asyncio.set_event_loop(None)
    resources = sorted(monitor.registrations, key=lambda r: r.urn)
    return StackRun(stack, resources, outputs, frozenset(secret_names), warnings.messages)


def _thread_event_loop(loops: list[asyncio.AbstractEventLoop]) -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loops.append(loop)


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is still pending on `loop`, let it finish, then close the loop."""
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()


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
