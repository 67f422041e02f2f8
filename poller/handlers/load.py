"""Load the user's handler from 'package.module:callable' (a function, or a class)."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from poller.errors import HandlerLoadError
from poller.message import Message


@dataclass(frozen=True)
class LoadedHandler:
    handle: Callable[[Message], None]
    close: Callable[[], None]
    name: str


@dataclass(frozen=True)
class LoadedTarget:
    """The object `handler.target` names: a function, or an instance of the class it names."""

    obj: Any
    close: Callable[[], None]
    name: str
    is_instance: bool


def load_target(target: str, options: Mapping[str, Any]) -> LoadedTarget:
    """Import the target and construct it when it is a class (with the options mapping).

    Which method is then called depends on `handler.style`: see poller.handlers.styles.
    Raises HandlerLoadError saying why.
    """
    module_name, _, attr_path = target.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: handlers next to the config work
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an import can fail in any way; all of them mean "cannot load"
        raise HandlerLoadError(
            f"cannot import handler module {module_name!r} (handler.target = {target!r}): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    obj: Any = module
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise HandlerLoadError(
                f"handler module {module_name!r} has no attribute {attr_path!r} (handler.target = {target!r})"
            ) from None
    if isinstance(obj, type):
        try:
            instance = obj(dict(options))
        except Exception as exc:
            raise HandlerLoadError(
                f"handler class {target} failed to start: {type(exc).__name__}: {exc}"
            ) from exc
        close = getattr(instance, "close", None)
        return LoadedTarget(instance, close if callable(close) else _nothing, target, True)
    if callable(obj):
        return LoadedTarget(obj, _nothing, target, False)
    raise HandlerLoadError(f"handler.target {target!r} is neither a function nor a class")


def load_handler(target: str, options: Mapping[str, Any]) -> LoadedHandler:
    """Import and (for a class) construct the handler. Raises HandlerLoadError saying why."""
    loaded = load_target(target, options)
    if not loaded.is_instance:
        return LoadedHandler(loaded.obj, loaded.close, target)
    handle = getattr(loaded.obj, "handle", None)
    if not callable(handle):
        raise HandlerLoadError(f"handler class {target} has no handle(message) method")
    return LoadedHandler(handle, loaded.close, target)


def _nothing() -> None:
    pass


def load_runner(
    config: Any, secrets: Any = None, handler: LoadedHandler | None = None
) -> tuple[LoadedHandler, Any]:
    """The worker's handler and its style's Runner (poller.handlers.styles). The target's class
    gets `[handler.options]` plus the worker's secrets; a `handler` given (a test's) is called
    in the message style."""
    from poller.handlers.styles import build_runner
    from poller.sqs import queue_region

    style = "message"
    if handler is None:
        options = dict(config.handler.options)
        if secrets is not None:
            options["secrets"] = secrets
        target = load_target(config.handler.target, options)
        handler = LoadedHandler(target.obj, target.close, target.name)
        style = config.handler.style
    runner = build_runner(
        style,
        handler.handle,
        timeout=config.handler.timeout,
        region=queue_region(config.queue),
        queue_url=config.queue.url,
        options=config.handler.options,
    )
    return handler, runner
