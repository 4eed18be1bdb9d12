"""docker-py (from PyPI) against berthd's Docker socket ($DOCKER_HOST): run, logs,
wait, exec, archive both ways, events, remove, containers listed with filters, images
pulled, listed, tagged and removed, and the errors docker-py raises. Each check prints
`ok NAME`; the first failure raises (a traceback and a non-zero exit)."""
import io
import sys
import tarfile
import time

import docker
import docker.errors


def check(name, condition, detail=""):
    if not condition:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok {name}", flush=True)


def expect_error(name, error_type, call, words):
    try:
        call()
    except error_type as error:
        check(name, words in str(error), f"{error!r} lacks {words!r}")
        return error
    raise AssertionError(f"{name}: no {error_type.__name__} raised")


def tar_of(files, links=None):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o640
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)
    return buffer.getvalue()


def files_of(chunks):
    archive = tarfile.open(fileobj=io.BytesIO(b"".join(chunks)))
    return {m.name: (archive.extractfile(m).read() if m.isfile() else None) for m in archive.getmembers()}


def system_and_images(client):
    check("ping", client.ping())
    check("api version", client.version()["ApiVersion"] == "1.50", client.version())
    image = client.images.pull("busybox", tag="latest")
    check("pull", "busybox:latest" in image.tags, image.tags)
    check("images list", any("busybox:latest" in i.tags for i in client.images.list()))
    check("image tag", image.tag("py/tagged", "v1"))
    listed = client.images.list(filters={"reference": "py/*"})
    # docker-py lists by ID, then inspects each image: all its tags, not the matching ones.
    check("images filter", len(listed) == 1 and "py/tagged:v1" in listed[0].tags, [i.tags for i in listed])
    check("image get", client.images.get("py/tagged:v1").id == image.id)
    client.images.remove("py/tagged:v1")
    expect_error("image removed", docker.errors.ImageNotFound, lambda: client.images.get("py/tagged:v1"), "No such image")
    expect_error("pull missing", docker.errors.APIError, lambda: client.images.pull("nosuch/image", tag="latest"), "not found")  # the mirror lacks it (its answer wins over unreachable docker.io)
    check("pull missing left nothing", not any("nosuch" in tag for i in client.images.list() for tag in i.tags))


def run_attached(client):
    out = client.containers.run("busybox", ["sh", "-c", "echo hello; echo err >&2"], remove=True)
    check("run stdout", out == b"hello\n", out)
    out = client.containers.run("busybox", ["sh", "-c", "echo out; echo err >&2"], stdout=False, stderr=True, remove=True)
    check("run stderr", out == b"err\n", out)
    error = expect_error("run exit code", docker.errors.ContainerError, lambda: client.containers.run("busybox", ["sh", "-c", "echo bad >&2; exit 3"], remove=True), "exit status 3")
    check("run error stderr", error.exit_status == 3 and b"bad" in error.stderr, error.stderr)
    expect_error("run missing image", docker.errors.ImageNotFound, lambda: client.containers.create("nosuch/image:latest"), "No such image")
    check("run removed", client.containers.list(all=True) == [], client.containers.list(all=True))


def logs_and_lists(client, main):
    for _ in range(100):
        if main.logs() == b"one\ntwo\n":
            break
        time.sleep(0.05)
    check("logs both", main.logs() == b"one\ntwo\n", main.logs())
    check("logs stdout", main.logs(stderr=False) == b"one\n", main.logs(stderr=False))
    check("logs stderr", main.logs(stdout=False) == b"two\n", main.logs(stdout=False))
    check("logs timestamps", main.logs(timestamps=True, stderr=False).split(b" ", 1)[1] == b"one\n")
    check("logs tail", main.logs(tail=1) == b"two\n", main.logs(tail=1))
    stream = main.logs(stream=True, follow=False)
    check("logs stream", b"".join(stream) == b"one\ntwo\n")
    main.reload()
    check("reload", main.status == "running" and main.attrs["Config"]["Labels"]["suite"] == "py", main.status)
    check("list label", [c.name for c in client.containers.list(filters={"label": "suite=py"})] == ["py-main"])
    check("list name", [c.id for c in client.containers.list(filters={"name": "py-main"})] == [main.id])
    check("list status", [c.name for c in client.containers.list(all=True, filters={"status": "created"})] == ["py-created"])
    check("list exited", client.containers.list(all=True, filters={"exited": "0"}) == [])
    check("list ancestor", len(client.containers.list(all=True, filters={"ancestor": "busybox"})) == 2)
    check("get by name", client.containers.get("py-main").id == main.id)
    check("get by prefix", client.containers.get(main.id[:10]).name == "py-main")


def exec_paths(main):
    result = main.exec_run(["sh", "-c", "echo x; exit 4"])
    check("exec exit code", result.exit_code == 4 and result.output == b"x\n", result)
    result = main.exec_run(["sh", "-c", "echo o; echo e >&2"], demux=True)
    check("exec demux", result.output == (b"o\n", b"e\n"), result.output)
    result = main.exec_run("hostname")
    check("exec string", result.output == main.id[:12].encode() + b"\n", result.output)
    result = main.exec_run(["sh", "-c", "echo $GREETING; pwd; id -u"], environment={"GREETING": "hey"}, workdir="/tmp", user="1000")
    check("exec env workdir user", result.output == b"hey\n/tmp\n1000\n", result.output)
    result = main.exec_run(["sh", "-c", "for i in 1 2 3; do echo $i; done"], stream=True)
    check("exec stream", b"".join(result.output) == b"1\n2\n3\n")
    result = main.exec_run(["sh", "-c", "[ -t 1 ] && echo on-a-terminal"], tty=True)
    check("exec tty", result.output == b"on-a-terminal\r\n", result.output)
    result = main.exec_run(["cat"], stdin=True, socket=True)
    sock = result.output._sock if hasattr(result.output, "_sock") else result.output
    sock.sendall(b"through the socket\n")
    sock.shutdown(1)
    received = b""
    while True:
        data = sock.recv(4096)
        if not data:
            break
        received += data
    check("exec socket stdin", b"through the socket\n" in received, received)


def archive_paths(main):
    check("put archive", main.put_archive("/tmp", tar_of({"greeting.txt": b"hi there\n", "sub/inner.txt": b"inner\n"})))
    check("archive visible", main.exec_run("cat /tmp/greeting.txt /tmp/sub/inner.txt").output == b"hi there\ninner\n")
    listing = main.exec_run("ls -l /tmp/greeting.txt").output
    check("archive mode", listing.startswith(b"-rw-r-----"), listing)
    bits, stat = main.get_archive("/tmp/greeting.txt")
    check("get archive stat", stat["name"] == "greeting.txt" and stat["size"] == 9 and stat["mode"] & 0o777 == 0o640, stat)
    check("get archive file", files_of(bits) == {"greeting.txt": b"hi there\n"})
    bits, stat = main.get_archive("/tmp/sub")
    check("get archive dir", stat["mode"] & (1 << 31) and files_of(bits) == {"sub": None, "sub/inner.txt": b"inner\n"}, stat)
    check("put archive link", main.put_archive("/tmp", tar_of({}, {"link": "/tmp/greeting.txt"})))
    stat = main.client.api.get_archive(main.id, "/tmp/link")[1]
    check("get archive link", stat["linkTarget"] == "/tmp/greeting.txt", stat)
    expect_error("get archive missing", docker.errors.NotFound, lambda: main.get_archive("/nosuch"), "Could not find the file /nosuch")
    expect_error("put archive missing", docker.errors.NotFound, lambda: main.put_archive("/nosuch", tar_of({"a": b"a"})), "Could not find the file /nosuch")
    expect_error("put archive not dir", docker.errors.APIError, lambda: main.put_archive("/tmp/greeting.txt", tar_of({"a": b"a"})), "not a directory")


def events_wait_remove(client, main, since):
    expect_error("remove running", docker.errors.APIError, main.remove, "container is running")
    main.kill()
    check("wait", main.wait(timeout=30)["StatusCode"] == 137)
    main.reload()
    check("exited state", main.status == "exited" and main.attrs["State"]["ExitCode"] == 137, main.attrs["State"])
    check("list exited code", [c.name for c in client.containers.list(all=True, filters={"exited": "137"})] == ["py-main"])
    expect_error("exec exited", docker.errors.APIError, lambda: main.exec_run("true"), "is not running")
    main.remove()
    expect_error("removed", docker.errors.NotFound, lambda: client.containers.get("py-main"), "No such container")
    client.containers.get("py-created").remove(force=True)
    until = int(time.time()) + 1
    time.sleep(1.1)
    seen = [(e["Action"], e["Actor"]["Attributes"].get("name")) for e in client.events(since=since, until=until, decode=True, filters={"type": "container"})]
    for wanted in ["create", "start", "exec_start: hostname", "archive-path", "extract-to-dir", "kill", "die", "destroy"]:
        check(f"event {wanted.strip()}", any(action.startswith(wanted) and name == "py-main" for action, name in seen), seen)
    live = client.events(decode=True, filters={"type": "container", "event": "create"})
    client.containers.create("busybox", "true", name="py-live")
    event = next(live)
    live.close()
    check("event stream", event["Action"] == "create" and event["Actor"]["Attributes"]["name"] == "py-live", event)
    client.containers.get("py-live").remove()


def main_flow():
    client = docker.from_env(timeout=60)
    since = int(time.time())
    system_and_images(client)
    run_attached(client)
    main = client.containers.run("busybox", ["sh", "-c", "echo one; sleep 0.1; echo two >&2; exec sleep 300"], detach=True, name="py-main", labels={"suite": "py"})
    client.containers.create("busybox", "true", name="py-created")
    expect_error("duplicate name", docker.errors.APIError, lambda: client.containers.create("busybox", "true", name="py-main"), "is already in use")
    logs_and_lists(client, main)
    exec_paths(main)
    archive_paths(main)
    events_wait_remove(client, main, since)
    check("nothing left", client.containers.list(all=True) == [])
    print("all passed", flush=True)


if __name__ == "__main__":
    main_flow()
    sys.exit(0)
