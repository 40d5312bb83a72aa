"""How an instance gets its secrets: through a pipe, never argv, the environment or a file.

The environment of a process stays readable in /proc/<pid>/environ for its
whole life (removing a variable from os.environ does not clear it), and argv in
/proc/<pid>/cmdline. So the starter writes the secrets as one JSON object into
a pipe, closes its end, and hands the read end to the instance
(`python -m app.instance --secrets-fd N`, e.g. with `subprocess.Popen(...,
pass_fds=(N,))`). The instance reads to the end, closes it and keeps the
secrets in memory only:

    {"sourcePassword": "…", "adminToken": "…" | null}

`adminToken` guards the instance's /admin/* routes; null leaves them always 401.
By hand: `python -m app.instance --settings s.json --secrets-fd 0 < secrets.json`
(then delete the file), or `3< <(printf '%s' "$JSON")` with `--secrets-fd 3`.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field

SECRETS_FD_OPTION = "--secrets-fd"
# Not a secret, handed over the same way: the listening socket the starter bound
# (gunicorn serves on it as `fd://N`), so the port cannot be taken in between.
LISTEN_FD_OPTION = "--listen-fd"
# Written before the instance starts reading: it must fit in the pipe's buffer
# (64 KiB on Linux) or the starter would block on its own write.
MAX_SECRETS_BYTES = 16 * 1024


class SecretsError(ValueError):
    """The secrets could not be read or are not the expected JSON object."""


@dataclass(frozen=True)
class InstanceSecrets:
    """The source password and the admin token of one instance."""

    source_password: str = field(repr=False)
    admin_token: str | None = field(default=None, repr=False)

    def encode(self) -> bytes:
        data = json.dumps({"sourcePassword": self.source_password,
                           "adminToken": self.admin_token}).encode()
        if len(data) > MAX_SECRETS_BYTES:
            raise SecretsError(f"the instance's secrets exceed {MAX_SECRETS_BYTES} bytes")
        return data

    @classmethod
    def decode(cls, data: bytes) -> "InstanceSecrets":
        try:
            value = json.loads(data)
        except ValueError:
            # Never quote the input: it is a secret.
            raise SecretsError("the secrets are not valid JSON") from None
        if not isinstance(value, dict) or set(value) - {"sourcePassword", "adminToken"}:
            raise SecretsError('the secrets must be a JSON object with "sourcePassword" '
                               'and "adminToken" only')
        password, token = value.get("sourcePassword"), value.get("adminToken")
        if not isinstance(password, str):
            raise SecretsError('the secrets need "sourcePassword" as a string')
        if token is not None and not isinstance(token, str):
            raise SecretsError('"adminToken" must be a string or null')
        return cls(source_password=password, admin_token=token or None)


def secrets_pipe(secrets: InstanceSecrets) -> int:
    """A pipe already holding `secrets`, its write end closed: returns the read end to pass on."""
    data = secrets.encode()
    read_end, write_end = os.pipe()
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(write_end, view):]
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    return read_end


def read_secrets(fd: int) -> InstanceSecrets:
    """Read the secrets from `fd` to its end and let go of it."""
    chunks, size = [], 0
    try:
        while chunk := os.read(fd, 4096):
            size += len(chunk)
            if size > MAX_SECRETS_BYTES:
                raise SecretsError(f"the secrets exceed {MAX_SECRETS_BYTES} bytes")
            chunks.append(chunk)
    except OSError as exc:
        raise SecretsError(f"cannot read the secrets from file descriptor {fd}: "
                           f"{exc.strerror}") from None
    finally:
        _release(fd)
    return InstanceSecrets.decode(b"".join(chunks))


def _release(fd: int) -> None:
    if fd > 2:
        with contextlib.suppress(OSError):
            os.close(fd)
        return
    # Closing stdin/stdout/stderr would let the next open file take its number.
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, fd)
    os.close(devnull)


__all__ = ["LISTEN_FD_OPTION", "MAX_SECRETS_BYTES", "SECRETS_FD_OPTION", "InstanceSecrets", "SecretsError",
           "read_secrets", "secrets_pipe"]
