"""`python -m scripts.verify_endpoint`: real TLS on 127.0.0.1, certificates made by the offline plan's pulumi-tls fakes.

Each server below presents one certificate: the workload's serving certificate from the inference CA,
one from another CA, and an OpenShift router's wildcard certificate (what an edge Route shows). A
tiny OpenAI-compatible handler answers behind them, so the --prompt path runs end to end.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from scripts import verify_endpoint
from tests.stack_edits import single_backend_lab, stacks_with
from tests.tls_fixtures import TEN_YEARS, JsonHandler, ca, server_certificate
from tests.stack_edits import UNKNOWN_ENV, known_environments

MODEL = "llama-3-1-8b"  # a model of stacks/Pulumi.dev-cloud.yaml
HOST = f"{MODEL}-{MODEL}.apps.confai-dev.eastus2.aroapp.test"
SERVED_MODEL = "meta/llama-3.1-8b-instruct"
PCR8 = "5f1c6b3e" * 8
KEY_RESOURCE = "llama-serving-key"
KEY_URI = "kbs:///default/inference-llama/tls.key"
NO_CHOICES = "(answer without choices)"  # a prompt the handler answers with an empty choices list
@dataclass
class Server:
    port: int
    requests: list[tuple[int, str, str, Any]] = field(default_factory=list)
    """(client port, method, path, JSON body) of every request the model handler saw."""


class OpenAiHandler(JsonHandler):
    """GET /v1/models and POST /v1/chat/completions, as NIM serves them; the answer echoes the prompt."""

    protocol_version = "HTTP/1.1"  # keep-alive: both requests travel on the verified connection
    server: Any

    def do_GET(self) -> None:
        self.server.record.append((self.client_address[1], "GET", self.path, None))
        if self.path == "/v1/cut":  # the model dies mid-answer
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b'{"object": ')
            self.close_connection = True
            return None
        if self.path != "/v1/models":
            return self.send_json(404, {"error": "not found"})
        self.send_json(200, {"object": "list", "data": [{"id": SERVED_MODEL, "object": "model"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.record.append((self.client_address[1], "POST", self.path, body))
        if self.path != "/v1/chat/completions" or body.get("model") != SERVED_MODEL:
            return self.send_json(400, {"error": "unknown model"})
        prompt = body["messages"][-1]["content"]
        if prompt == NO_CHOICES:
            return self.send_json(200, {"object": "chat.completion", "model": SERVED_MODEL, "choices": []})
        self.send_json(200, {"object": "chat.completion", "model": SERVED_MODEL,
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": f"You said: {prompt}"}, "finish_reason": "stop"}]})

@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Any]:
    inference_ca = ca("inference-ca", "Confidential AI inference CA")
    other_ca = ca("other-ca", "Some other CA")
    router_ca = ca("router-ca", "cluster-ingress-operator@1764547200")  # the ingress operator's CA name
    return {
        "ca": inference_ca,
        "serving": server_certificate("inference-llama", inference_ca, [HOST]),
        "reissued": server_certificate("inference-llama-reissued", inference_ca, [HOST]),
        "other": server_certificate("other", other_ca, [HOST]),
        "router": server_certificate("router", router_ca, ["*.apps.confai-dev.eastus2.aroapp.test"]),
        # A sharded ingress controller's default certificate (the same operator CA, another domain), and
        # a default ingress certificate replaced by one from the organisation's CA (OpenShift's advice).
        "router-shard": server_certificate("router-shard", router_ca, ["*.internal.confai-dev.eastus2.aroapp.test"]),
        "custom-wildcard": server_certificate("custom-wildcard", ca("contoso-ca", "Contoso Issuing CA 01"), ["*.apps.confai-dev.eastus2.aroapp.test"]),
        "dir": tmp_path_factory.mktemp("pki"),
    }


@contextlib.contextmanager
def serving(cert_pem: str, key_pem: str, directory: Path, client_ca: str | None = None, handler: type[OpenAiHandler] | None = None) -> Iterator[Server]:
    """The OpenAI-compatible handler behind TLS on 127.0.0.1 with this certificate and key; with
    `client_ca`, it requires client certificates that CA issued (as NIM_SSL_MODE=MTLS does)."""
    chain = directory / f"{abs(hash(cert_pem))}.pem"
    chain.write_text(cert_pem + key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=client_ca)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler or OpenAiHandler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    httpd.record = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Server(httpd.server_address[1], httpd.record)  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        thread.join(timeout=5)
        httpd.server_close()


@pytest.fixture(scope="module")
def servers(pki) -> Iterator[dict[str, Server]]:
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(serving(*pki[name], pki["dir"])) for name in ("serving", "reissued", "other", "router", "router-shard", "custom-wildcard")}


def trusted_outputs(pki: dict[str, Any]) -> dict[str, Any]:
    return {
        "kbsUrl": "https://kbs.trusted-dev.example.com",
        "inferenceCaCert": pki["ca"][0],
        "kbsResources": {KEY_RESOURCE: {"uri": KEY_URI, "gpuGated": True, "minGpus": 1}},
        "workloads": {
            "llama": {
                "image": "nvcr.io/nim/meta/llama-3.1-8b-instruct@sha256:" + "ab" * 32,
                "initdataPcr8": PCR8,
                "servingCertificate": pki["serving"][0],
                "servingKeyResource": KEY_RESOURCE,
            }
        },
    }


def run(tmp_path: Path, trusted: dict[str, Any], url: str, *extra: str, workload: str | None = "llama") -> int:
    (tmp_path / "trusted.json").write_text(json.dumps(trusted))
    model = {"externalUrl": url, **({"workload": workload} if workload else {})}
    (tmp_path / "cloud.json").write_text(json.dumps({"models": {MODEL: model}}))
    argv = ["dev", MODEL, "--trusted-outputs", str(tmp_path / "trusted.json"), "--cloud-outputs", str(tmp_path / "cloud.json"), *extra]
    return verify_endpoint.main(argv, make_pulumi=no_pulumi, address="127.0.0.1")


def no_pulumi() -> Any:
    raise AssertionError("outputs come from the files")


def failure(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert captured.out == ""
    return lines[0]


# --- Verification -------------------------------------------------------------------------------


def test_the_serving_certificate_verifies_and_the_report_says_what_bound_the_key(pki, servers, tmp_path, capsys):
    port = servers["serving"].port
    assert run(tmp_path, trusted_outputs(pki), f"https://{HOST}:{port}") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{MODEL}: https://{HOST}:{port} verified (TLSv1.")
    report = {line.split()[0]: line for line in out[1:]}
    assert "Confidential AI inference CA (inferenceCaCert of dev-trusted)" in report["signed"]
    assert f"for {HOST}, valid 2026-01-01 to 2035-12-30" in report["certificate"]
    assert f"KBS resource {KEY_RESOURCE} ({KEY_URI})" in report["key"]
    assert f"workload llama: PCR 8 = {PCR8}" in report["bound"]
    assert "CPU attestation (SEV-SNP vTPM, PCR 8 as above) and 1 attested GPU" in report["released"]
    assert servers["serving"].requests == []  # without --prompt nothing is sent


def test_the_workload_is_found_by_its_certificate_when_the_cloud_stack_does_not_name_it(pki, servers, tmp_path, capsys):
    assert run(tmp_path, trusted_outputs(pki), f"https://{HOST}:{servers['serving'].port}", workload=None) == 0
    assert "workload llama: PCR 8" in capsys.readouterr().out


def test_a_certificate_from_another_ca_is_refused(pki, servers, tmp_path, capsys):
    port = servers["other"].port
    assert run(tmp_path, trusted_outputs(pki), f"https://{HOST}:{port}", "--prompt", "my diagnosis") == 1
    assert failure(capsys) == (
        f"FAILED: {HOST}:{port}: the certificate (for {HOST}) is issued by Some other CA, not by the inference CA of "
        "dev-trusted (Confidential AI inference CA): wrong CA or wrong server"
    )
    assert servers["other"].requests == []


def test_trusting_the_wrong_ca_refuses_the_genuine_server(pki, servers, tmp_path, capsys):
    trusted = trusted_outputs(pki) | {"inferenceCaCert": ca("other-ca", "Some other CA")[0]}
    assert run(tmp_path, trusted, f"https://{HOST}:{servers['serving'].port}") == 1
    assert "is issued by Confidential AI inference CA, not by the inference CA of dev-trusted (Some other CA)" in failure(capsys)


def test_a_certificate_for_another_host_is_refused(pki, servers, tmp_path, capsys):
    port = servers["serving"].port
    other = "mistral-mistral.apps.confai-dev.eastus2.aroapp.test"
    assert run(tmp_path, trusted_outputs(pki), f"https://{other}:{port}", "--prompt", "my diagnosis") == 1
    assert failure(capsys) == f"FAILED: {other}:{port}: the certificate from the inference CA is for {HOST}, not for {other}: wrong host"
    assert servers["serving"].requests == []


def test_an_edge_route_shows_the_router_certificate_and_is_refused(pki, servers, tmp_path, capsys):
    port = servers["router"].port
    assert run(tmp_path, trusted_outputs(pki), f"https://{HOST}:{port}", "--prompt", "my diagnosis") == 1
    assert failure(capsys) == (
        f"FAILED: {HOST}:{port}: TLS ends at the cluster's router, not in the TEE (certificate for "
        "*.apps.confai-dev.eastus2.aroapp.test issued by cluster-ingress-operator@1764547200): the model is exposed through an "
        "edge or re-encrypt Route; do not send it prompts"
    )
    assert servers["router"].requests == []


@pytest.mark.parametrize("server, names, issuer", [
    ("router-shard", "*.internal.confai-dev.eastus2.aroapp.test", "cluster-ingress-operator@1764547200"),
    ("custom-wildcard", "*.apps.confai-dev.eastus2.aroapp.test", "Contoso Issuing CA 01"),
], ids=["operator-ca-other-domain", "wildcard-from-another-ca"])
def test_a_router_is_recognised_by_its_ca_or_by_a_wildcard_alone(pki, servers, tmp_path, capsys, server, names, issuer):
    port = servers[server].port
    assert run(tmp_path, trusted_outputs(pki), f"https://{HOST}:{port}") == 1
    assert failure(capsys) == (
        f"FAILED: {HOST}:{port}: TLS ends at the cluster's router, not in the TEE (certificate for {names} issued by {issuer}): "
        "the model is exposed through an edge or re-encrypt Route; do not send it prompts"
    )


def test_a_server_gone_before_its_certificate_is_read_again_is_one_line(pki, tmp_path, capsys):
    """The handshake fails verification; the second connection, which only reads the certificate to
    explain why, finds no server: the verification error alone is reported."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    chain = pki["dir"] / "other-once.pem"
    chain.write_text("".join(pki["other"]))
    context.load_cert_chain(chain)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve_once() -> None:
        connection, _ = listener.accept()
        listener.close()  # before the handshake: the client's second connection is refused
        with contextlib.suppress(OSError), context.wrap_socket(connection, server_side=True):
            pass

    thread = threading.Thread(target=serve_once, daemon=True)
    thread.start()
    assert run(tmp_path, trusted_outputs(pki), f"https://{HOST}:{port}") == 1
    thread.join(timeout=5)
    assert failure(capsys) == f"FAILED: {HOST}:{port}: the certificate does not verify (unable to get local issuer certificate)"


def test_a_certificate_the_trusted_stack_did_not_publish_is_refused(pki, servers, tmp_path, capsys):
    """Issued by the inference CA for the right host, but not the workload's serving certificate (e.g. an old key)."""
    port = servers["reissued"].port
    assert run(tmp_path, trusted_outputs(pki), f"https://{HOST}:{port}") == 1
    assert "is from the inference CA but is not the serving certificate dev-trusted publishes for any workload" in failure(capsys)


def test_another_workloads_certificate_is_refused(pki, servers, tmp_path, capsys):
    trusted = trusted_outputs(pki)
    trusted["workloads"]["mistral"] = {**trusted["workloads"]["llama"], "servingCertificate": pki["reissued"][0]}
    assert run(tmp_path, trusted, f"https://{HOST}:{servers['serving'].port}", workload="mistral") == 1
    assert failure(capsys).endswith(f"serves workload llama's certificate, but {MODEL} runs workload mistral")


def test_plain_http_is_refused_without_connecting(pki, tmp_path, capsys):
    assert run(tmp_path, trusted_outputs(pki), f"http://{HOST}:1") == 1
    assert failure(capsys) == f"FAILED: {MODEL}: http://{HOST}:1 is not an https:// URL: prompts would leave the client unencrypted"


@pytest.mark.parametrize("url, problem", [
    ("https://:443/", "names no host"),
    (f"https://{HOST}:https/", ": Port could not be cast to integer value as 'https'"),
], ids=["no-host", "port-not-a-number"])
def test_an_external_url_that_names_no_server_exits_2(pki, tmp_path, capsys, url, problem):
    assert run(tmp_path, trusted_outputs(pki), url) == 2
    assert failure(capsys) == f"error: dev-cloud outputs: models.{MODEL}.externalUrl {url}{problem if problem.startswith(':') else ' ' + problem}"


def test_nothing_listening_is_one_line(pki, tmp_path, capsys):
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert run(tmp_path, trusted_outputs(pki), f"https://{HOST}:{port}") == 1
    assert failure(capsys).startswith(f"FAILED: {HOST}:{port}: cannot connect: ")


# --- --prompt ------------------------------------------------------------------------------------


def test_the_prompt_goes_over_the_verified_connection_and_the_answer_is_printed(pki, servers, tmp_path, capsys):
    server = servers["serving"]
    server.requests.clear()
    assert run(tmp_path, trusted_outputs(pki), f"https://{HOST}:{server.port}", "--prompt", "Is this private?") == 0
    out = capsys.readouterr().out
    assert out.endswith("\n\nYou said: Is this private?\n")
    (models, completion) = server.requests
    assert models[1:3] == ("GET", "/v1/models")
    assert completion[1:3] == ("POST", "/v1/chat/completions")
    assert completion[3]["model"] == SERVED_MODEL and completion[3]["messages"] == [{"role": "user", "content": "Is this private?"}]
    assert models[0] == completion[0]  # same client port: one connection, the verified one


def test_a_model_error_is_one_line(pki, servers, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(verify_endpoint, "ask", lambda connection, prompt: verify_endpoint._json(connection, "GET", "/v1/nothing"))
    assert run(tmp_path, trusted_outputs(pki), f"https://{HOST}:{servers['serving'].port}", "--prompt", "hi") == 1
    err = capsys.readouterr().err.splitlines()
    assert err == ['FAILED: GET /v1/nothing: the model answered 404 Not Found: {"error": "not found"}']


def test_an_answer_cut_short_is_one_line(pki, servers, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(verify_endpoint, "ask", lambda connection, prompt: verify_endpoint._json(connection, "GET", "/v1/cut"))
    assert run(tmp_path, trusted_outputs(pki), f"https://{HOST}:{servers['serving'].port}", "--prompt", "hi") == 1
    assert capsys.readouterr().err.splitlines() == ["FAILED: GET /v1/cut: no answer: IncompleteRead(11 bytes read, 89 more expected)"]


def test_an_answer_without_content_is_one_line(pki, servers, tmp_path, capsys):
    assert run(tmp_path, trusted_outputs(pki), f"https://{HOST}:{servers['serving'].port}", "--prompt", NO_CHOICES) == 1
    assert capsys.readouterr().err.splitlines() == ["FAILED: POST /v1/chat/completions: the answer has no choices[0].message.content"]


class NoModelHandler(OpenAiHandler):
    """A model server that lists no model (NIM before its model has loaded)."""

    def do_GET(self) -> None:
        self.server.record.append((self.client_address[1], "GET", self.path, None))
        self.send_json(200, {"object": "list", "data": []})


def test_an_endpoint_serving_no_model_gets_no_prompt(pki, tmp_path, capsys):
    with serving(*pki["serving"], pki["dir"], handler=NoModelHandler) as server:
        assert run(tmp_path, trusted_outputs(pki), f"https://{HOST}:{server.port}", "--prompt", "my diagnosis") == 1
    assert capsys.readouterr().err.splitlines() == ["FAILED: GET /v1/models: the endpoint serves no model"]
    assert [request[1:3] for request in server.requests] == [("GET", "/v1/models")]


# --- Mutual TLS ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mtls(pki) -> Iterator[tuple[Server, Path]]:
    """The serving certificate behind a server that requires client certificates from a client CA."""
    client_ca = ca("client-ca", "Clinic client CA")
    cert, key = server_certificate("clinic-app", client_ca, ["clinic-app.example.com"], use="client_auth")
    identity = pki["dir"] / "client.pem"
    identity.write_text(cert + key)
    with serving(*pki["serving"], pki["dir"], client_ca=client_ca[0]) as server:
        yield server, identity


def test_a_client_certificate_opens_a_model_that_requires_one(pki, mtls, tmp_path, capsys):
    server, identity = mtls
    url = f"https://{HOST}:{server.port}"
    assert run(tmp_path, trusted_outputs(pki), url, "--prompt", "Is this private?", "--client-cert", str(identity)) == 0
    assert capsys.readouterr().out.endswith("You said: Is this private?\n")


def test_without_a_client_certificate_the_model_refuses_the_prompt(pki, mtls, tmp_path, capsys):
    server, _ = mtls
    assert run(tmp_path, trusted_outputs(pki), f"https://{HOST}:{server.port}", "--prompt", "hi") == 1
    captured = capsys.readouterr()
    assert "verified" in captured.out  # the server's identity still checks out
    [line] = captured.err.splitlines()
    assert line.startswith("FAILED: GET /v1/models: the model ended the TLS session") and line.endswith("if it requires client certificates, pass --client-cert")


def test_an_unreadable_client_certificate_exits_2(pki, tmp_path, capsys):
    missing = tmp_path / "nope.pem"
    assert run(tmp_path, trusted_outputs(pki), f"https://{HOST}:1", "--client-cert", str(missing)) == 2
    assert failure(capsys) == f"error: --client-cert {missing}: No such file or directory"


# --- Bad input: exit 2, one line, nothing contacted ----------------------------------------------


class Outputs:
    def __init__(self, stacks: dict[str, dict[str, Any] | None]):
        self.stacks = stacks
        self.asked: list[str] = []

    def outputs(self, stack: str) -> dict[str, Any] | None:
        self.asked.append(stack)
        return self.stacks.get(stack)


def test_an_unknown_environment_exits_2(capsys):
    assert verify_endpoint.main([UNKNOWN_ENV, MODEL], make_pulumi=no_pulumi) == 2
    assert failure(capsys) == f"error: unknown environment '{UNKNOWN_ENV}': expected one of {known_environments()}"


def test_an_unknown_model_exits_2(capsys):
    assert verify_endpoint.main(["dev", "gpt-9"], make_pulumi=no_pulumi) == 2
    assert failure(capsys) == f"error: unknown model 'gpt-9' in dev-cloud: expected one of {MODEL}, mistral-7b"


def test_an_environment_with_two_cloud_stacks_needs_cloud_stack(capsys):
    assert verify_endpoint.main(["prod", MODEL], make_pulumi=no_pulumi) == 2
    assert failure(capsys) == "error: prod has 2 cloud stacks (prod-cloud, prod-cloud-eastus): choose one with --cloud-stack NAME"


def test_a_cloud_stack_whose_models_are_no_list_exits_2(tmp_path, capsys):
    stacks = stacks_with(tmp_path / "stacks", {"dev-cloud": {"models": {"name": MODEL}}})
    assert verify_endpoint.main(["dev", MODEL, "--stacks-dir", str(stacks)], make_pulumi=no_pulumi) == 2
    assert failure(capsys) == "error: dev-cloud: confidential-ai:models is not a list of models"


def test_an_invalid_cloud_stack_config_exits_2_naming_the_key(tmp_path, capsys):
    stacks = stacks_with(tmp_path / "stacks", {"dev-cloud": {"models.0.gpus": 0}})
    assert verify_endpoint.main(["dev", MODEL, "--stacks-dir", str(stacks)], make_pulumi=no_pulumi) == 2
    assert failure(capsys).startswith("dev-cloud: models[0].gpus: ")


def test_an_environment_that_is_no_stack_name_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exited:
        verify_endpoint.main(["../dev", MODEL])
    assert exited.value.code == 2
    assert failure(capsys).startswith("python -m scripts.verify_endpoint: error: argument env: '../dev' is not an environment name")


def test_outputs_come_from_the_stacks_through_the_adapter(pki, servers, capsys):
    port = servers["serving"].port
    pulumi = Outputs({"dev-trusted": trusted_outputs(pki), "dev-cloud": {"models": {MODEL: {"externalUrl": f"https://{HOST}:{port}"}}}})
    lab = ["--stacks-dir", str(single_backend_lab() / "stacks")]  # dev-cloud reads dev-trusted's outputs there
    assert verify_endpoint.main(["dev", MODEL, *lab], make_pulumi=lambda: pulumi, address="127.0.0.1") == 0
    assert pulumi.asked == ["dev-trusted", "dev-cloud"]
    assert "verified" in capsys.readouterr().out


def test_an_undeployed_stack_exits_2(pki, capsys):
    pulumi = Outputs({"dev-trusted": trusted_outputs(pki)})
    assert verify_endpoint.main(["dev", MODEL, "--stacks-dir", str(single_backend_lab() / "stacks")], make_pulumi=lambda: pulumi) == 2
    assert failure(capsys) == "error: dev-cloud has not been deployed (no outputs): run `python -m scripts.up dev` first"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda o: o.pop("inferenceCaCert"), "error: dev-trusted outputs have no inferenceCaCert: deploy the trusted stack with its inference CA first"),
        (lambda o: o["workloads"].clear(), "error: dev-trusted outputs publish no workload serving certificate (workloads.<name>.servingCertificate)"),
        (lambda o: o["kbsResources"].clear(), f"error: dev-trusted outputs: workloads.llama.servingKeyResource '{KEY_RESOURCE}' is not in kbsResources"),
        (lambda o: o.update(inferenceCaCert="not a PEM"), "error: dev-trusted output inferenceCaCert is not a PEM certificate"),
    ],
    ids=["no-ca", "no-serving-certificate", "key-resource-unpublished", "ca-not-pem"],
)
def test_incomplete_trusted_outputs_exit_2(pki, tmp_path, capsys, edit, message):
    outputs = trusted_outputs(pki)
    edit(outputs)
    assert run(tmp_path, outputs, f"https://{HOST}:1") == 2
    assert failure(capsys) == message


def test_a_model_running_a_workload_the_trusted_side_does_not_publish_exits_2(pki, tmp_path, capsys):
    assert run(tmp_path, trusted_outputs(pki), f"https://{HOST}:1", workload="phi-3") == 2
    assert failure(capsys) == f"error: dev-cloud says {MODEL} runs workload 'phi-3', for which dev-trusted publishes no serving certificate"


@pytest.mark.parametrize("models", [{}, {MODEL: {"workload": "llama"}}], ids=["no-model", "no-external-url"])
def test_a_model_missing_from_the_cloud_outputs_exits_2(pki, tmp_path, capsys, models):
    (tmp_path / "trusted.json").write_text(json.dumps(trusted_outputs(pki)))
    (tmp_path / "cloud.json").write_text(json.dumps({"models": models}))
    argv = ["dev", MODEL, "--trusted-outputs", str(tmp_path / "trusted.json"), "--cloud-outputs", str(tmp_path / "cloud.json")]
    assert verify_endpoint.main(argv, make_pulumi=no_pulumi) == 2
    assert failure(capsys) == f"error: dev-cloud outputs have no models.{MODEL}.externalUrl: deploy the cloud stack with this model"


def test_a_bad_outputs_file_exits_2(tmp_path, capsys):
    (tmp_path / "trusted.json").write_text("{not json")
    assert verify_endpoint.main(["dev", MODEL, "--trusted-outputs", str(tmp_path / "trusted.json")], make_pulumi=no_pulumi) == 2
    assert failure(capsys).startswith(f"error: --trusted-outputs {tmp_path / 'trusted.json'} is not JSON: ")


# --- End to end over the offline plan --------------------------------------------------------------


def test_the_plans_certificate_and_outputs_verify_end_to_end(runner, tmp_path, capsys):
    """The dev trusted stack's inference CA and serving certificate, the dev cloud stack's model URL, and a
    server holding the key the plan made for the workload (the fakes derive it from the resource name)."""
    trusted = runner.example("dev-trusted", set={"inferenceTls.validityHours": TEN_YEARS})
    cloud = runner.example("dev-cloud", stack_outputs={"dev-trusted": trusted.stack_outputs})
    workload = trusted.outputs["spokes"]["dev-cloud"]["workloads"][MODEL]
    key = trusted.named(f"inference-tls-{MODEL}-key", "tls:index/privateKey:PrivateKey").outputs["privateKeyPemPkcs8"]
    with serving(workload["servingCertificate"], key, tmp_path) as server:
        url = cloud.outputs["models"][MODEL]["externalUrl"]
        cloud_outputs = {"models": {MODEL: {**cloud.outputs["models"][MODEL], "externalUrl": f"{url}:{server.port}"}}}
        (tmp_path / "trusted.json").write_text(json.dumps(trusted.outputs))
        (tmp_path / "cloud.json").write_text(json.dumps(cloud_outputs))
        argv = ["dev", MODEL, "--trusted-outputs", str(tmp_path / "trusted.json"), "--cloud-outputs", str(tmp_path / "cloud.json"), "--prompt", "hello"]
        assert verify_endpoint.main(argv, make_pulumi=no_pulumi, address="127.0.0.1") == 0
    out = capsys.readouterr().out
    assert f"workload {MODEL}: PCR 8 = {workload['initdataPcr8']}" in out
    assert f"KBS resource {MODEL}-tls-key (kbs:///default/inference-tls-keys/{MODEL})" in out
    assert out.endswith("You said: hello\n")


def test_a_trust_bundle_for_a_cloud_stack_that_pins_no_key_exits_2(tmp_path, capsys):
    lab = str(single_backend_lab() / "stacks")
    argv = ["dev", MODEL, "--stacks-dir", lab, "--trust-bundle", str(tmp_path / "bundle.json")]
    assert verify_endpoint.main(argv, make_pulumi=no_pulumi) == 2
    assert failure(capsys) == f"error: --trust-bundle {tmp_path / 'bundle.json'}: dev-cloud pins no trust bundle key (set trustBundle in its stack file)"


def test_a_bundle_pinned_to_the_offline_placeholder_key_is_refused(pki, capsys):
    pulumi = Outputs({"dev-trusted": trusted_outputs(pki)})
    assert verify_endpoint.main(["dev", MODEL], make_pulumi=lambda: pulumi) == 2
    assert failure(capsys) == (
        "error: dev-cloud: trustBundle.keys[0] is the offline plan's placeholder key f5Q6IhMpcxzfoWmYt1vehzM070L_mn6Bt3r43tszZ-g "
        "(its private half is public): pin the trustBundleKey output of the deployed trusted stack")
    assert pulumi.asked == []  # refused before any stack output is read
