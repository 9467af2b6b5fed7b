"""Where keys come from on the command line: an environment variable or a hidden prompt.

A key is never the value of an option, because command lines land in shell
history and in ``ps`` output. ``--key-env VAR`` names the variable that holds it;
``--ask-key`` (or an encrypted input met on a terminal) prompts without echo.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from desiru.errors import DesiruError, MissingKeyError, NotEncryptedError

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def key_options(f: F) -> F:
    """``--key-env VAR`` and ``--ask-key``: the key that opens an encrypted input."""
    f = click.option("--ask-key", is_flag=True,
                     help="Prompt for the key of an encrypted input (input is not echoed).")(f)
    f = click.option("--key-env", metavar="VAR",
                     help="Read the key of an encrypted input from environment variable VAR "
                     "(32 raw bytes, 64 hex chars, base64 of 32 bytes, or a passphrase).")(f)
    return f


def output_key_options(f: F) -> F:
    """``--encrypt`` and ``--out-key-env VAR``: encrypt what the command writes."""
    f = click.option("--out-key-env", metavar="VAR",
                     help="Encrypt the output with the key in environment variable VAR (implies --encrypt).")(f)
    f = click.option("--encrypt", is_flag=True,
                     help="Encrypt the output (AES-256-GCM). The key comes from --out-key-env, else the "
                     "input's --key-env, else a prompt.")(f)
    return f


def from_env(var: str, *, option: str = "--key-env") -> str:
    """The key held by environment variable ``var``; a clear error when it is unset or empty."""
    if not var or "=" in var:
        raise DesiruError(f"{option} takes the NAME of an environment variable, got {var!r}",
                          hint=f"`read -rs MY_KEY && export MY_KEY` (typed without echo), then {option} MY_KEY; "
                               "or --ask-key to be prompted")
    value = os.environ.get(var)
    if value is None:
        raise DesiruError(f"environment variable {var} is not set",
                          hint=f"`read -rs {var} && export {var}` first (the key is typed without echo), "
                               "or use --ask-key to type it")
    if not value:
        raise DesiruError(f"environment variable {var} is empty",
                          hint=f"`read -rs {var} && export {var}` first, or use --ask-key")
    return value


def prompt_key(label: str = "Key", *, confirm: bool = False, asked: bool = False,
               hint: str = "give it with --key-env VAR (or --new-key-env / --out-key-env)") -> str:
    """Ask for a key without echo (twice when ``confirm``, for a key that will encrypt).

    Without a terminal a prompt is only made when the user ``asked`` for one (--ask-key, which
    reads the key from piped input); otherwise this fails at once with ``hint``, instead of
    reading a key from whatever stdin holds (and echoing it).
    """
    from desiru.cli import progress

    if not asked and not interactive():
        raise DesiruError(f"{label.lower()} needed, and there is no terminal to type it", hint=hint)
    try:
        with progress.paused():
            value = click.prompt(label, hide_input=True, confirmation_prompt=confirm, err=True)
    except click.Abort:
        if interactive():
            raise
        raise DesiruError(f"{label.lower()} needed, and the input ended before one was typed",
                          hint=hint) from None
    if not value:
        raise DesiruError("an empty key was entered", hint="type the key or passphrase")
    return str(value)


def input_key(key_env: str | None, ask_key: bool, *, label: str = "Key") -> str | None:
    """The key for an input: from --key-env, from a prompt with --ask-key, else None."""
    if key_env:
        return from_env(key_env)
    if ask_key:
        return prompt_key(label, asked=True)
    return None


def output_key(encrypt: bool, out_key_env: str | None, in_key: str | None) -> str | None:
    """The key to encrypt an output with, or None for a plain output."""
    if out_key_env:
        return from_env(out_key_env, option="--out-key-env")
    if not encrypt:
        return None
    if in_key is not None:
        return in_key
    return prompt_key("Key to encrypt the output with", confirm=True,
                      hint="give it with --out-key-env VAR (or --key-env VAR to reuse the input's key)")


def interactive() -> bool:
    """True when a person at a terminal can answer a prompt."""
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def with_key(open_fn: Callable[[str | None], T], key: str | None, *, label: str = "Key",
             prompt: bool = True) -> T:
    """Call ``open_fn(key)``; when the input turns out to be encrypted and no key was given,
    ask for one on a terminal (and retry once) instead of failing (unless ``prompt=False``)."""
    return with_key_used(open_fn, key, label=label, prompt=prompt)[0]


def with_key_used(open_fn: Callable[[str | None], T], key: str | None, *,
                  label: str = "Key", prompt: bool = True) -> tuple[T, str | None]:
    """Like :func:`with_key`, also returning the key to use for the next input and the output.

    A plain input read while a key was given returns that key still: one --key-env serves
    every input of a command (``diff plain.json enc.bin --key-env K``).
    """
    try:
        return open_fn(key), key
    except NotEncryptedError:
        # the library refuses a key for plaintext (a planted file); on the command line one
        # --key-env serves a mix of plain and encrypted inputs, so read this one as plain
        return open_fn(None), key
    except MissingKeyError:
        if key is not None or not prompt or not interactive():
            raise
    asked = prompt_key(label)
    return open_fn(asked), asked
