"""WebSocket cases against berth's streaming server, with the websocket-client library:
remote command over v5.channel.k8s.io and v4.channel.k8s.io (channel-prefixed binary
messages), and port forwarding over the portforward.k8s.io channel protocol.
Argument: a JSON object of single-use URLs made by the Rust test."""
import json
import sys
import time

import websocket

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255


def connect(url, protocol):
    ws_url = url.replace("http://", "ws://", 1)
    return websocket.create_connection(ws_url, subprotocols=[protocol], timeout=30)


def collect(ws, until=None):
    """Reads channel messages until the server closes (or `until(out)` holds)."""
    out = {STDOUT: b"", STDERR: b"", ERROR: b""}
    while True:
        try:
            opcode, data = ws.recv_data()
        except websocket.WebSocketConnectionClosedException:
            break
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            break
        if data:
            out[data[0]] = out.get(data[0], b"") + data[1:]
        if until and until(out):
            break
    return out


def status(out):
    return json.loads(out[ERROR].decode())


def expect_exit(out, code):
    st = status(out)
    if code == 0:
        assert st["status"] == "Success", st
    else:
        assert st["reason"] == "NonZeroExitCode", st
        assert st["details"]["causes"][0] == {"reason": "ExitCode", "message": str(code)}, st


def main():
    urls = json.loads(sys.argv[1])

    ws = connect(urls["echo"], "v4.channel.k8s.io")
    assert ws.subprotocol == "v4.channel.k8s.io", ws.subprotocol
    out = collect(ws)
    assert (out[STDOUT], out[STDERR]) == (b"out\n", b"err\n"), out
    expect_exit(out, 0)
    print("echo ok")

    ws = connect(urls["cat"], "v5.channel.k8s.io")
    ws.send_binary(bytes([STDIN]) + b"hello ws\n")
    ws.send_binary(bytes([CLOSE, STDIN]))
    out = collect(ws)
    assert out[STDOUT] == b"hello ws\n", out
    expect_exit(out, 0)
    print("cat ok")

    ws = connect(urls["exit3"], "v5.channel.k8s.io")
    out = collect(ws)
    expect_exit(out, 3)
    print("exit code ok")

    ws = connect(urls["tty"], "v5.channel.k8s.io")
    ws.send_binary(bytes([RESIZE]) + json.dumps({"Width": 100, "Height": 50}).encode())
    time.sleep(0.2)
    ws.send_binary(bytes([STDIN]) + b"go\r")
    out = collect(ws)
    assert b"50 100" in out[STDOUT], out
    expect_exit(out, 0)
    print("tty ok")

    ws = connect(urls["attach"], "v5.channel.k8s.io")
    time.sleep(0.3)
    ws.send_binary(bytes([STDIN]) + b"echo wsattach\n")
    out = collect(ws, until=lambda o: b"wsattach\n" in o[STDOUT])
    assert out[STDOUT] == b"wsattach\n", out
    ws.send_binary(bytes([CLOSE, STDIN]))
    rest = collect(ws)
    expect_exit(rest, 0)
    print("attach ok")

    ws = connect(urls["forward"] + "?port=8080", "portforward.k8s.io")
    first = [ws.recv_data()[1] for _ in range(2)]
    assert first == [bytes([0, 0x90, 0x1F]), bytes([1, 0x90, 0x1F])], first
    ws.send_binary(bytes([0]) + b"GET / HTTP/1.0\r\n\r\n")
    out = collect(ws)
    page = out.get(0, b"").decode()
    assert page.startswith("HTTP/1.") and page.endswith(urls["page"]), out
    print("port forward ok")

    ws = connect(urls["noport"] + "?port=9", "portforward.k8s.io")
    out = collect(ws)
    assert b"error forwarding port 9" in out.get(1, b""), out
    print("port without listener ok")

    print("all websocket cases passed")


if __name__ == "__main__":
    main()
