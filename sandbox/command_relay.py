"""Run one command with a loopback port that leads out of its jail (stdlib only).

Run inside a local sandbox, around a command of the agent::

    python3 -I -S command_relay.py DIR SOCKET NAME... -- ARGV...

Listens on a free port of ``127.0.0.1`` in the command's own network namespace
and pipes each connection to the Unix socket ``DIR/SOCKET``, on which the server
listens (its model proxy). In the environment given to ``ARGV``, ``{port}`` in
the value of each variable ``NAME`` becomes that port. Exits with ``ARGV``'s
exit status (128 + N when signal N killed it).

It starts with every command, so it imports next to nothing: the C modules
``_socket``, ``_thread`` and ``_signal`` (already loaded at start-up) rather
than ``socket``, ``threading`` and ``signal``, whose ``enum`` imports double
its CPU cost, and no asyncio (several times more). A thread per direction of
each connection.
"""

import _signal
import _socket
import _thread
import os
import sys

_CHUNK = 64 * 1024


def _pipe(source, target, done=None):
    try:
        while True:
            data = source.recv(_CHUNK)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    finally:
        try:
            target.shutdown(_socket.SHUT_WR)
        except OSError:
            pass
        if done is not None:
            done.release()


def _serve(fd, socket_name):
    client = _socket.socket(fileno=fd)
    upstream = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        upstream.connect(socket_name)  # relative: the relay works in DIR
    except OSError:
        upstream.close()
        client.close()
        return
    done = _thread.allocate_lock()
    done.acquire()
    _thread.start_new_thread(_pipe, (upstream, client, done))
    _pipe(client, upstream)
    done.acquire()  # the other direction ended too
    client.close()
    upstream.close()


def _accept(listener, socket_name):
    while True:
        try:
            fd, _ = listener._accept()
        except OSError:
            return
        _thread.start_new_thread(_serve, (fd, socket_name))


def main(argv):
    if "--" not in argv or argv.index("--") < 2 or argv.index("--") == len(argv) - 1:
        sys.stderr.write("usage: command_relay.py DIR SOCKET NAME... -- ARGV...\n")
        return 2
    split = argv.index("--")
    directory, socket_name, names, command = argv[0], argv[1], argv[2:split], argv[split + 1 :]
    listener = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = str(listener.getsockname()[1])
    env = dict(os.environ)
    for name in names:
        if name in env:
            env[name] = env[name].replace("{port}", port)
    pid = os.fork()
    if pid == 0:  # the command: where it was started, without the relay's socket
        listener.close()
        try:
            os.execvpe(command[0], command, env)
        except OSError as exc:
            sys.stderr.write(f"command_relay: cannot run {command[0]}: {exc.strerror}\n")
        os._exit(127)
    os.chdir(directory)
    _thread.start_new_thread(_accept, (listener, socket_name))
    for sig in (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP):
        _signal.signal(sig, lambda signum, _frame: os.kill(pid, signum))
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.stdout.flush()
    os._exit(main(sys.argv[1:]))
