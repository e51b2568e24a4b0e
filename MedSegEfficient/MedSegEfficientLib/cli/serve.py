"""``medseg serve``: our models behind MONAI Label's REST protocol, for its Slicer module and its Python client."""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
from pathlib import Path

from MedSegEfficientLib.cli.termination import stop_on_termination
from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.model.library import DEFAULT_MODEL, list_model_files, resolve_model_path
from MedSegEfficientLib.model.model_file import read_card

TOKEN_VARIABLE = "MEDSEG_SERVE_TOKEN"


def run(args: argparse.Namespace) -> int:
    from MedSegEfficientLib.server.http_app import MedSegServer
    from MedSegEfficientLib.server.inference_queue import InferenceQueue

    token = args.token or os.environ.get(TOKEN_VARIABLE) or None
    if not _is_loopback(args.host) and token is None:
        raise MedSegError(f"--host {args.host} lets other machines in: give --token (or set {TOKEN_VARIABLE}), "
                          "or keep the default 127.0.0.1")
    if args.max_upload_mb <= 0:
        raise MedSegError(f"--max-upload-mb must be above 0, not {args.max_upload_mb}")
    models = served_models(args.model)
    cards = {name: read_card(path) for name, path in models.items()}  # a bad model file is one line, now
    devices = serving_devices(args.device)
    inference = InferenceQueue(models, devices, args.queue, args.fast)
    try:
        server = MedSegServer((args.host, args.port), inference, cards, token, int(args.max_upload_mb * 2**20),
                              quiet=args.quiet, client_seconds=args.client_timeout)
    except OSError as error:
        inference.close()
        raise MedSegError(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}") from None
    print(f"medseg serve: {server.url} (MONAI Label protocol), models {', '.join(models)} on {', '.join(devices)}"
          f"; queue {args.queue}; {'token required' if token else 'no token'}; Ctrl-C stops", flush=True)
    with stop_on_termination() as stopped_by:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print(f"medseg serve: stopped ({stopped_by.get('signal', 'Ctrl-C')})", file=sys.stderr)
        finally:
            server.close()  # removes the uploaded images, whichever way the server ends
    return 0


def served_models(names: list[str] | None) -> dict[str, Path]:
    """The models asked for, or every shipped and imported model with the default first."""
    if names:
        paths = [resolve_model_path(name) for name in names]
    else:
        paths = [Path(entry["path"]) for entry in list_model_files() if "error" not in entry]
        paths.sort(key=lambda path: path.stem != DEFAULT_MODEL)
    models: dict[str, Path] = {}
    for path in paths:
        if path.stem in models and models[path.stem] != path:
            raise MedSegError(f"two models named {path.stem}: {models[path.stem]} and {path}")
        models[path.stem] = path
    if not models:
        raise MedSegError("no model to serve")
    return models


def serving_devices(choice: str) -> list[str]:
    """One worker per GPU for auto/cuda, or the one device asked for."""
    import torch

    from MedSegEfficientLib.inference.gpu.devices import select_device

    device = select_device(choice)
    if device.type == "cuda" and device.index is None:
        return [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    return [str(device)]


def _is_loopback(host: str) -> bool:
    try:
        addresses = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        raise MedSegError(f"--host {host}: not an address of this machine (it does not resolve)") from None
    try:
        return all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in addresses)
    except ValueError:
        return False
