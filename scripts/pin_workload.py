"""Pin a trusted workload to its image, read from the registry:
`python -m scripts.pin_workload IMAGE --env ENV --workload NAME [--stacks-dir DIR] [--platform linux/amd64] [--plain-http] [--write]`.

Resolves IMAGE (a tag, or a digest) through the OCI distribution API and reads the image's config, then
prints, or with --write puts into `Pulumi.ENV-trusted.yaml` (comments and key order kept), the values the
workload's agent policy pins:
- `image`: `repository@sha256:<digest>`, the digest the reference resolves to: for a multi-platform image the
  index's. The pod spec names that reference, CRI-O hands it to the guest as the image name, and the guest's
  image pull fetches the index by that digest and the platform's manifest by the digest the index lists,
  so the one digest fixes every byte the pod VM runs; it is also what `skopeo inspect` and NGC show.
- `args`: the image's Entrypoint then Cmd, the process the runtime starts when the pod spec sets no command;
- `imageEnv`: the image's Env, which the runtime puts in front of the pod's own environment;
- `workingDir`: the image's WorkingDir, normalised (`/` when it sets none, as the runtimes default).
Not the image's User: OpenShift's restricted SCC assigns the UID at admission, and a pinned one would not match.

Credentials: NGC_API_KEY for nvcr.io (user `$oauthtoken`), else REGISTRY_AUTH_FILE, containers' auth.json
and docker's config.json (`auths`), else anonymous; Basic and Bearer-token registries. None is ever printed.

Exit status: 0 resolved (and written), 2 could not (one line naming why).
"""

from __future__ import annotations

import argparse
import posixpath
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from scripts.cli import ArgumentParser, environment
from scripts.offline.stackfile import STACKS_DIR, StackFileError
from scripts.registry import RegistryError, credentials
from scripts.registry.client import Repository
from scripts.registry.image import Platform, ResolvedImage, resolve
from scripts.registry.reference import ImageReference, parse
from scripts.stack_file_edit import StackFileEdit

DEFAULT_PLATFORM = "linux/amd64"  # the confidential GPU VM sizes are x86-64 (AMD SEV-SNP)


def _platform(text: str) -> Platform:
    try:
        return Platform.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(prog="python -m scripts.pin_workload", description=__doc__.split("\n\n")[0])
    parser.add_argument("image", metavar="IMAGE", help="the image by tag or digest, like nvcr.io/nim/meta/llama-3.1-8b-instruct:1.3.3")
    parser.add_argument("--env", required=True, type=environment, help="the environment whose trusted stack file holds the workload")
    parser.add_argument("--workload", required=True, help="the workload's name in that file's workloads")
    parser.add_argument("--stacks-dir", type=Path, default=STACKS_DIR, help="where the stack files are (default: stacks/)")
    parser.add_argument("--platform", type=_platform, default=Platform.parse(DEFAULT_PLATFORM), help=f"the pod VM's platform (default: {DEFAULT_PLATFORM})")
    parser.add_argument("--plain-http", action="store_true", help="talk HTTP, not HTTPS, to the registry (a local test registry)")
    parser.add_argument("--write", action="store_true", help="put the values into the stack file instead of only printing them")
    return parser.parse_args(argv)


def pinned_values(image: ImageReference, resolved: ResolvedImage) -> dict[str, Any]:
    """The workload's keys as the stack file spells them."""
    config = resolved.config
    args = [*_strings(config.get("Entrypoint")), *_strings(config.get("Cmd"))]
    if not args:
        raise RegistryError(f"{image} sets neither Entrypoint nor Cmd: there is no process of the image to pin")
    return {
        "image": image.pinned(resolved.digest),
        "args": args,
        "imageEnv": _strings(config.get("Env")),
        "workingDir": _working_dir(image, config.get("WorkingDir")),
    }


def _working_dir(image: ImageReference, value: object) -> str:
    """The image's WorkingDir as the agent uses it: `/` when unset, `//` and `..` collapsed, no trailing `/`."""
    if not value:
        return "/"
    if not isinstance(value, str) or not value.startswith("/"):
        raise RegistryError(f"{image}: its WorkingDir {value!r} is not an absolute path")
    return "/" + posixpath.normpath(value).lstrip("/")


def _strings(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _workload_index(edit: StackFileEdit, name: str) -> int:
    workloads = edit.get("workloads") or []
    names = [w.get("name") if isinstance(w, dict) else None for w in workloads]
    if name not in names:
        known = ", ".join(str(n) for n in names if n) or "none"
        raise StackFileError(f"{edit.path}: no workload named {name!r} (workloads: {known})")
    return names.index(name)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    path = args.stacks_dir / f"Pulumi.{args.env}-trusted.yaml"
    try:
        edit = StackFileEdit.read(path)
        index = _workload_index(edit, args.workload)
        image = parse(args.image)
        repository = Repository(image, credentials.find(image), plain_http=args.plain_http)
        resolved = resolve(repository, image, args.platform)
        values = pinned_values(image, resolved)
    except (RegistryError, StackFileError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    key = f"workloads[{index}]"
    print(f"# {image} for {args.platform}: {resolved.digest}" + (f" (an index; its {args.platform} manifest is {resolved.manifest_digest})" if resolved.manifest_digest != resolved.digest else ""))
    if resolved.config.get("User"):
        print(f"# not pinned: the image's User {resolved.config['User']!r} (OpenShift's restricted SCC assigns the UID)")
    previous = edit.get(f"{key}.image")
    if isinstance(previous, str) and previous.split("@")[0] != image.name:
        print(f"# note: {key}.image moves from repository {previous.split('@')[0]} to {image.name}")
    print(f"# {key} ({args.workload}) in {path}")
    print(yaml.safe_dump(values, sort_keys=False, default_flow_style=False, width=4096), end="")
    if args.write:
        for name, value in values.items():
            edit.set(f"{key}.{name}", value)
        if edit.changed:
            try:
                edit.write()
            except OSError as err:
                print(f"error: cannot write {path}: {err.strerror or err}", file=sys.stderr)
                return 2
            print(f"wrote {key}.{{{', '.join(values)}}} to {path}; plan it: python -m scripts.plan {args.env}")
        else:
            print(f"{path}: {key} is already pinned to these values")
    return 0


if __name__ == "__main__":
    sys.exit(main())
