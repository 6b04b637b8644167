# The Python side of backend-kernel-runner: one persistent interpreter driven over a control socket.
#
# The runner starts `python3 -u -c <this file>` with the control socket as fd 0 (a socketpair end: passing it as
# stdin needs no pre_exec). Messages are JSON lines both ways:
#   runner -> python: {"t":"exec","id","code"} {"t":"input","text","eof"} {"t":"complete","code"} {"t":"synced"}
#   python -> runner: {"t":"start","id"} {"t":"out","s":"stdout"|"stderr","d"} {"t":"input","prompt"}
#                     {"t":"done","id","code"} {"t":"completion","items"} {"t":"sync"} {"t":"media","mime","d"}
# ("media" is what display() sends: an html or media console item, in order with the output around it.)
# The real fd 1/2 stay pipes that the runner forwards (subprocesses, C code).
import sys

# Import the REPL's modules before the work directory is on sys.path, so a user's json.py cannot shadow them.
_path0 = sys.path.pop(0) if sys.path and sys.path[0] in ("", ".") else None

import ast
import base64
import builtins
import io
import json
import linecache
import os
import signal
import socket
import subprocess
import threading
import time
import traceback
import types

try:
    import rlcompleter
except Exception:  # completion is best effort
    rlcompleter = None

if _path0 is not None:
    sys.path.insert(0, _path0)

_CHUNK = 65536  # characters per "out" message; the runner re-splits to its frame limit
_INTERVAL = 0.05  # seconds: a newline flushes when the last flush is older than this; the flusher thread too
_MAIN = threading.main_thread()


class _State:
    user = False  # user code runs: SIGINT raises KeyboardInterrupt (otherwise it is ignored)
    pending = False  # a SIGINT arrived inside a critical section and is raised when it ends


_state = _State()
_tls = threading.local()


def _on_sigint(signum, frame):
    if not _state.user:
        return  # idle or reporting: an interrupt must never kill the REPL loop
    if getattr(_tls, "critical", 0):
        _state.pending = True  # raising now could leave half a message on the control socket
        return
    raise KeyboardInterrupt


class _Critical:
    """Defers KeyboardInterrupt while a message is being written."""

    def __enter__(self):
        _tls.critical = getattr(_tls, "critical", 0) + 1

    def __exit__(self, exc_type, exc, tb):
        _tls.critical -= 1
        if (
            _tls.critical == 0
            and exc_type is None
            and _state.pending
            and _state.user
            and threading.current_thread() is _MAIN
        ):
            _state.pending = False
            raise KeyboardInterrupt
        return False


_io_lock = threading.RLock()  # serialises the writers' buffers and every send on the control socket


class _Control:
    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def send(self, msg):
        data = (json.dumps(msg, ensure_ascii=False) + "\n").encode("utf-8", "replace")
        with _Critical():
            with _io_lock:
                try:
                    self.sock.sendall(data)
                except OSError:
                    os._exit(0)  # the runner is gone; nobody is left to serve

    def recv(self):
        """The next message, or None when the runner closed the channel."""
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[: i + 1]
                try:
                    return json.loads(line)
                except ValueError:
                    continue  # a line cut by an interrupted read: skip it
            try:
                chunk = self.sock.recv(1 << 16)
            except OSError:
                return None
            if not chunk:
                return None
            self.buf += chunk


_ctl = _Control(socket.socket(fileno=os.dup(0)))
# fd 0 must not stay the control socket: subprocesses and C code would read the runner's messages.
_devnull = os.open(os.devnull, os.O_RDONLY)
os.dup2(_devnull, 0)
os.close(_devnull)


class _Output(io.TextIOBase):
    """sys.stdout / sys.stderr: buffered, sent over the control channel, in order across both streams."""

    def __init__(self, name, fd):
        self.name = name
        self._fd = fd
        self._parts = []
        self._size = 0
        self._last = 0.0

    @property
    def encoding(self):
        return "utf-8"

    @property
    def errors(self):
        return "strict"

    def writable(self):
        return True

    def isatty(self):
        return False

    def fileno(self):
        return self._fd  # the runner forwards the real fd as this stream too

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError("write() argument must be str, not %s" % type(s).__name__)
        if not s:
            return 0
        with _Critical():
            with _io_lock:
                other = _stderr if self is _stdout else _stdout
                if other._parts:
                    other._flush_locked()  # keeps stdout and stderr in the order they were written
                self._parts.append(s)
                self._size += len(s)
                if self._size >= _CHUNK or ("\n" in s and time.monotonic() - self._last >= _INTERVAL):
                    self._flush_locked()
        return len(s)

    def flush(self):
        with _Critical():
            with _io_lock:
                self._flush_locked()

    def _flush_locked(self):
        self._last = time.monotonic()
        if not self._parts:
            return
        data = "".join(self._parts)
        self._parts = []
        self._size = 0
        for i in range(0, len(data), _CHUNK):
            _ctl.send({"t": "out", "s": self.name, "d": data[i : i + _CHUNK]})

    @property
    def buffer(self):
        return _BinaryOutput(self)


class _BinaryOutput(io.RawIOBase):
    """sys.stdout.buffer: bytes are decoded as UTF-8 and forwarded as text."""

    def __init__(self, text):
        self._text = text

    def writable(self):
        return True

    def write(self, b):
        data = bytes(b)
        self._text.write(data.decode("utf-8", "replace"))
        return len(data)

    def flush(self):
        self._text.flush()


class _Input(io.TextIOBase):
    """sys.stdin: every read asks the agent for a line (WaitingInput)."""

    name = "<stdin>"

    @property
    def encoding(self):
        return "utf-8"

    def readable(self):
        return True

    def isatty(self):
        return False

    def readline(self, size=-1):
        return _read_input("")

    def read(self, size=-1):
        return _read_input("")


def _read_input(prompt):
    _stdout.flush()
    _stderr.flush()
    _ctl.send({"t": "input", "prompt": prompt})
    while True:
        # Interruptible on purpose: an Interrupt while waiting raises KeyboardInterrupt in the user's code.
        msg = _ctl.recv()
        if msg is None:
            os._exit(0)
        if msg.get("t") == "input":
            break
    if msg.get("eof"):
        return ""
    text = str(msg.get("text", ""))
    return text if text.endswith("\n") else text + "\n"


_builtin_input = builtins.input


def _input(prompt=""):
    line = _read_input(str(prompt))
    if not line:
        raise EOFError("EOF when reading a line")
    return line[:-1] if line.endswith("\n") else line


_stdout = _Output("stdout", 1)
_stderr = _Output("stderr", 2)
sys.stdout = _stdout
sys.stderr = _stderr
sys.stdin = _Input()
builtins.input = _input


# What display() looks for, in the order it prefers them (richest first, as notebook front ends choose).
_REPR_METHODS = (
    ("_repr_html_", "text/html"),
    ("_repr_svg_", "image/svg+xml"),
    ("_repr_png_", "image/png"),
    ("_repr_jpeg_", "image/jpeg"),
)


def _send_media(mime, data):
    with _Critical():
        with _io_lock:
            # What was printed before comes first: the item lands between the output around it.
            _stdout._flush_locked()
            _stderr._flush_locked()
            _ctl.send({"t": "media", "mime": mime, "d": data})


def _payload(mime, value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value)
        if mime.startswith("text/") or mime.endswith("+xml"):
            return value.decode("utf-8", "replace")
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, str):
        return value  # text, or binary data already in base64
    raise TypeError("display(..., mime=%r) takes str or bytes, not %s" % (mime, type(value).__name__))


def display(*objs, mime=None):
    """Shows objects as rich console items, like IPython's display().

    An object with _repr_html_ becomes an "html" item; one with _repr_svg_, _repr_png_ or _repr_jpeg_ a "media"
    item [mime, payload] (images base64). With mime=, a str (or bytes) is sent as that type as it is:
    display("<b>hi</b>", mime="text/html"), display(png_base64, mime="image/png"). Anything else is printed.
    """
    for obj in objs:
        if mime is not None:
            mime_type = str(mime)
            _send_media(mime_type, _payload(mime_type, obj))
            continue
        for method, mime_type in _REPR_METHODS:
            render = getattr(obj, method, None)
            if not callable(render):
                continue
            data = render()
            if data is None:
                continue  # the object declines this type; try the next
            if isinstance(data, tuple):  # IPython allows (data, metadata)
                data = data[0]
            _send_media(mime_type, _payload(mime_type, data))
            break
        else:
            print(repr(obj))


builtins.display = display


def _flusher():
    # A program that prints a line and then computes (or blocks) must still show that line soon.
    while True:
        time.sleep(_INTERVAL)
        try:
            with _io_lock:
                now = time.monotonic()
                for w in (_stdout, _stderr):
                    if w._parts and now - w._last >= _INTERVAL:
                        w._flush_locked()
        except Exception:
            pass


threading.Thread(target=_flusher, name="backend-kernel-runner-flusher", daemon=True).start()


def _after_fork_in_child():
    # A forked child writes to the real fds (forwarded by the runner) and never touches the control channel.
    try:
        _ctl.sock.close()
    except Exception:
        pass
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    sys.stdin = open(0, "r", closefd=False)
    builtins.input = _builtin_input
    builtins.display = _display_as_text


def _display_as_text(*objs, **kwargs):
    # A forked child has no control channel for rich items.
    for obj in objs:
        print(repr(obj))


def _flush_all():
    for w in (_stdout, _stderr):
        try:
            w.flush()
        except Exception:
            pass


def _sync_with_runner():
    """Before a process starts: what we wrote, and what the real fds got so far, is emitted before its output.

    Flushing alone is not enough: the runner could read the new process's pipe output before our flushed message.
    So we wait until the runner has drained the pipes (a "sync" answered by "synced").
    """
    _flush_all()
    if not _state.user or threading.current_thread() is not _MAIN:
        return  # only the main thread reads the control channel
    _ctl.send({"t": "sync"})
    while True:
        msg = _ctl.recv()  # interruptible: an Interrupt here ends the wait like any other
        if msg is None:
            os._exit(0)
        if msg.get("t") == "synced":
            return


# A forked child writes to the real fds: what we buffered comes first. (No sync: exceptions in fork hooks are
# swallowed, so an interrupted wait would be lost.)
os.register_at_fork(before=_flush_all, after_in_child=_after_fork_in_child)


def _flushing(spawn):
    def wrapper(*args, **kwargs):
        _sync_with_runner()
        return spawn(*args, **kwargs)

    wrapper.__name__ = getattr(spawn, "__name__", "wrapper")
    wrapper.__doc__ = getattr(spawn, "__doc__", None)
    wrapper.__wrapped__ = spawn
    return wrapper


# These start processes without os.fork (vfork/posix_spawn/system), so the fork hook does not see them.
subprocess.Popen.__init__ = _flushing(subprocess.Popen.__init__)
for _name in ("system", "posix_spawn", "posix_spawnp"):
    if hasattr(os, _name):
        setattr(os, _name, _flushing(getattr(os, _name)))

try:
    import ctypes

    _libc_fflush = ctypes.CDLL(None).fflush
except Exception:
    _libc_fflush = None


def _flush_c_stdio():
    # printf from C extensions is buffered by libc while fd 1 is a pipe.
    if _libc_fflush is not None:
        try:
            _libc_fflush(None)
        except Exception:
            pass


# The user's namespace is a fresh __main__ module, so pickling user classes works and the REPL's names stay hidden.
_repl_module = sys.modules["__main__"]
_user_module = types.ModuleType("__main__")
_user_module.__dict__["__builtins__"] = builtins
sys.modules["__main__"] = _user_module
_user_ns = _user_module.__dict__
sys.argv = [""]

_OWN_FILE = _on_sigint.__code__.co_filename
_cell = 0


def _exit_code(e):
    code = e.code
    if code is None:
        return 0
    if isinstance(code, int):
        return max(min(code, 2**31 - 1), -(2**31))
    _stderr.write("%s\n" % (code,))
    return 1


def _without_repl_frames(te, seen):
    # The REPL's own frames (running the cell, or a deferred KeyboardInterrupt raised in its writer) are noise.
    if te is None or id(te) in seen:
        return
    seen.add(id(te))
    te.stack = traceback.StackSummary.from_list([f for f in te.stack if f.filename != _OWN_FILE])
    _without_repl_frames(te.__cause__, seen)
    _without_repl_frames(te.__context__, seen)
    for sub in getattr(te, "exceptions", None) or ():
        _without_repl_frames(sub, seen)


def _print_exception(e):
    try:
        te = traceback.TracebackException(type(e), e, e.__traceback__, compact=True)
    except TypeError:  # Python < 3.10
        te = traceback.TracebackException(type(e), e, e.__traceback__)
    _without_repl_frames(te, set())
    _stderr.write("".join(te.format()))


def _run_code(code, filename):
    tree = compile(code, filename, "exec", ast.PyCF_ONLY_AST)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, filename, "exec"), _user_ns)
    if last is not None:
        value = eval(compile(last, filename, "eval"), _user_ns)
        sys.displayhook(value)  # prints the repr unless None, and sets builtins._ like the REPL


def _execute(run_id, code):
    global _cell
    _cell += 1
    filename = "<cell %d>" % _cell
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    exit_code = 1
    try:
        signal.signal(signal.SIGINT, _on_sigint)  # user code may have replaced it in an earlier run
        _state.pending = False
        try:
            try:
                _state.user = True
                # The runner sends SIGINT only after this, so an early Interrupt is never lost while idle.
                _ctl.send({"t": "start", "id": run_id})
                _run_code(code, filename)
            finally:
                _state.user = False
            exit_code = 0
        except SystemExit as e:
            _state.user = False
            exit_code = _exit_code(e)
        except BaseException as e:
            _state.user = False
            _print_exception(e)
            exit_code = 1
    except BaseException:
        pass  # reporting failed (e.g. an exception whose __str__ raises); the run still ends
    finally:
        _state.user = False
        for w in (_stdout, _stderr):
            try:
                w.flush()
            except BaseException:
                pass
        _flush_c_stdio()
        _ctl.send({"t": "done", "id": run_id, "code": exit_code})


def _complete(text):
    if rlcompleter is None:
        return []
    i = len(text)
    while i > 0 and (text[i - 1].isalnum() or text[i - 1] in "_."):
        i -= 1
    token = text[i:]
    if not token:
        return []
    completer = rlcompleter.Completer(_user_ns)
    items = []
    for state in range(1000):
        try:
            item = completer.complete(token, state)
        except Exception:
            break
        if item is None:
            break
        items.append(item)
    return items


def _main():
    signal.signal(signal.SIGINT, _on_sigint)
    while True:
        try:
            msg = _ctl.recv()
            if msg is None:
                os._exit(0)  # the runner closed the channel: it is gone
            kind = msg.get("t")
            if kind == "exec":
                _execute(str(msg.get("id", "")), str(msg.get("code", "")))
            elif kind == "complete":
                try:
                    items = _complete(str(msg.get("code", "")))
                except BaseException:
                    items = []
                _ctl.send({"t": "completion", "items": items})
            # a stray "input" or "synced" (answering a wait that an interrupt ended) is ignored
        except BaseException:
            _state.user = False  # never let anything end the REPL loop


_main()
