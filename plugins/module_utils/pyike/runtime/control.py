"""The daemon's control socket: one JSON request per connection, one JSON answer back.

Request:  {"command": "list-sas", "args": {...}}\\n
Answer:   {"ok": true, "result": ...}\\n   or   {"ok": false, "error": "what went wrong"}\\n

The socket is a unix stream socket created with mode 0600 (only root talks to the daemon), so the
protocol carries no authentication of its own. Answers never contain secrets.

Even root's clients can be broken: at most ``max_connections`` are served at once (others are
answered "busy" at once), each must send its request and take its answer within
``client_timeout`` seconds, and a request that is too long or too deeply nested gets an error
answer. Handlers check their arguments with :func:`check_args` and the ``*_arg`` helpers.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import math
import os
import socket
from typing import Any, Awaitable, Callable, Dict, Iterable, Optional

log = logging.getLogger("pyike.control")

MAX_REQUEST = 64 * 1024
MAX_CONNECTIONS = 16  # served at once; each `initiate` holds one while it waits
CLIENT_TIMEOUT = 10.0  # seconds a client may take to send its request, and to take its answer
MAX_NAME = 255  # connection and child names
LINGER_SECONDS = 1.0  # a busy answer waits this long for the client to close, to read what it sent
Handler = Callable[[Dict[str, Any]], Awaitable[Any]]


async def _discard(reader: asyncio.StreamReader) -> None:
    """Read and drop what the client sends until it closes (the caller bounds the time)."""
    while await reader.read(65536):
        pass


class ControlError(Exception):
    """A request the daemon refuses; the message goes back to the client as the error."""


def check_args(command: str, args: Dict[str, Any], known: Iterable[str]) -> None:
    """Refuse argument names a command does not know (a typo must not be ignored silently)."""
    unknown = sorted(set(args) - set(known))
    if unknown:
        raise ControlError(
            "unknown argument(s) for %s: %s; known: %s"
            % (command, ", ".join(_short(name) for name in unknown), ", ".join(sorted(known)) or "none")
        )


def text_arg(args: Dict[str, Any], name: str, required: bool = True) -> Optional[str]:
    """A name (connection, child): a non-empty string of at most MAX_NAME characters."""
    value = args.get(name)
    if value is None:
        if required:
            raise ControlError('"%s" is required' % name)
        return None
    if not isinstance(value, str) or not value:
        raise ControlError('"%s" must be a string, not %s' % (name, _short(value)))
    if len(value) > MAX_NAME:
        raise ControlError('"%s" must be a string of at most %d characters' % (name, MAX_NAME))
    return value


def bool_arg(args: Dict[str, Any], name: str) -> bool:
    value = args.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ControlError('"%s" must be true or false, not %s' % (name, _short(value)))
    return value


def seconds_arg(args: Dict[str, Any], name: str, default: float, minimum: float, maximum: float) -> float:
    """A JSON number of seconds, finite, with minimum < value <= maximum (NaN would never time out)."""
    value = args.get(name)
    if value is None:
        return default
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if (
        not number
        or (isinstance(value, float) and not math.isfinite(value))
        or not minimum < value <= maximum
    ):
        raise ControlError(
            '"%s" must be a number of seconds above %g and at most %g, not %s'
            % (name, minimum, maximum, _short(value))
        )
    return float(value)


def _short(value: Any, limit: int = 40) -> str:
    """A value for an error message, cut short (it echoes what a client sent)."""
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ControlServer:
    def __init__(
        self,
        path: str,
        handlers: Dict[str, Handler],
        *,
        max_connections: int = MAX_CONNECTIONS,
        client_timeout: float = CLIENT_TIMEOUT,
    ):
        self.path = path
        self.handlers = handlers
        self.max_connections = max_connections
        self.client_timeout = client_timeout
        self.active = 0  # connections being served now
        self.busy_refusals = 0
        self._server: Optional[asyncio.AbstractServer] = None

    async def start(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
        if os.path.exists(self.path):
            os.unlink(self.path)
        old_umask = os.umask(0o177)  # the socket is born 0600, never briefly world-accessible
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=self.path, limit=MAX_REQUEST)
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.active >= self.max_connections:
            self.busy_refusals += 1
            await self._reply(
                writer,
                {
                    "ok": False,
                    "error": "busy: the daemon is already serving %d control connections; try again"
                    % self.active,
                },
                unread=reader,
            )
            return
        self.active += 1
        try:
            try:
                line = await asyncio.wait_for(reader.readline(), timeout=self.client_timeout)
            except asyncio.TimeoutError:
                writer.transport.abort()  # an idle client gives its slot back
                return
            except ValueError:  # asyncio's LimitOverrunError: no newline within the limit
                answer: Dict[str, Any] = {
                    "ok": False,
                    "error": "the request is longer than %d bytes" % MAX_REQUEST,
                }
            else:
                answer = await self._answer(line)
            await self._reply(writer, answer)
        except ConnectionError:
            writer.transport.abort()
        finally:
            self.active -= 1

    async def _reply(
        self,
        writer: asyncio.StreamWriter,
        answer: Dict[str, Any],
        unread: Optional[asyncio.StreamReader] = None,
    ) -> None:
        """Write the answer and close; a client that does not take it in time is cut off. With `unread`,
        the request was not read (busy): it is read and dropped after the answer, because closing a
        socket with unread data resets it, and the client would lose the answer it has not read yet."""
        try:
            writer.write(json.dumps(answer, sort_keys=True).encode() + b"\n")
            await asyncio.wait_for(writer.drain(), timeout=self.client_timeout)
            if unread is not None:
                writer.write_eof()
                await asyncio.wait_for(_discard(unread), timeout=LINGER_SECONDS)
        except (asyncio.TimeoutError, ConnectionError):
            writer.transport.abort()
            return
        writer.close()

    async def _answer(self, line: bytes) -> Dict[str, Any]:
        try:
            request = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return {"ok": False, "error": "the request is not one line of JSON"}
        except RecursionError:
            return {"ok": False, "error": "the request is nested too deeply"}
        if not isinstance(request, dict) or not isinstance(request.get("command"), str):
            return {"ok": False, "error": 'the request needs a "command" string'}
        handler = self.handlers.get(request["command"])
        if handler is None:
            return {
                "ok": False,
                "error": "unknown command %s; known: %s"
                % (_short(request["command"]), ", ".join(sorted(self.handlers))),
            }
        args = request.get("args") or {}
        if not isinstance(args, dict):
            return {"ok": False, "error": '"args" must be an object'}
        try:
            return {"ok": True, "result": await handler(args)}
        except ControlError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception:  # a bug in one handler must not take the daemon down
            log.exception("control command %s failed", request["command"])
            return {
                "ok": False,
                "error": "internal error while running %s; see the daemon log" % request["command"],
            }


class ControlUnavailable(ControlError):
    """Nothing listens on the control socket: the daemon is not running."""


class ControlTimeout(ControlError):
    """The daemon accepted the request but did not answer in time."""


class ControlRefused(ControlError):
    """The daemon answered with an error; str() is its message."""


def call(path: str, command: str, args: Optional[Dict[str, Any]] = None, timeout: float = 30.0) -> Any:
    """Send one request to the daemon at `path` and return its result.

    Raises ControlUnavailable (not running), ControlTimeout, ControlRefused (the daemon said no: a
    reload of a bad file) or ControlError (anything else), so callers can tell these apart.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK):
                raise ControlUnavailable(
                    "no daemon control socket at %s (%s): is it running?" % (path, exc.strerror or exc)
                ) from None
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise ControlError("no permission to use %s: run as root" % path) from None
            raise ControlError("cannot connect to %s: %s" % (path, exc.strerror or exc)) from None
        try:
            sock.sendall(json.dumps({"command": command, "args": args or {}}).encode() + b"\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # a busy daemon answers without reading the request and closes: the answer is waiting
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except socket.timeout:
        raise ControlTimeout(
            "the daemon at %s did not answer %s within %gs" % (path, command, timeout)
        ) from None
    except OSError as exc:
        raise ControlError("talking to the daemon at %s failed: %s" % (path, exc.strerror or exc)) from None
    finally:
        sock.close()
    if not chunks:
        raise ControlError("the daemon at %s closed the connection without answering %s" % (path, command))
    try:
        answer = json.loads(b"".join(chunks).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ControlError("the daemon's answer to %s is not JSON" % command) from None
    if not isinstance(answer, dict):
        raise ControlError("the daemon's answer to %s is not a JSON object" % command)
    if not answer.get("ok"):
        raise ControlRefused(str(answer.get("error") or "the daemon refused %s" % command))
    return answer.get("result")
