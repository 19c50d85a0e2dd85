"""ONNX Runtime's JavaScript packages as runtimes of our ONNX folders, in ONNX Runtime's calling shape: `ort-node`
(onnxruntime-node, native CPU kernels) and `ort-web` (onnxruntime-web's WASM build, the one web pages run, here
under Node).

The npm packages are pinned in runtime/edge/package.json and package-lock.json (shipped with the package) and
installed once with `npm ci` into a cache folder named by the hash of those files; npm's post-install download of
CUDA binaries is skipped (the CPU binaries are inside the npm package). Each session is one `node` child process
serving runtime/edge/ort_session.mjs over its stdin/stdout; it reports the time of `session.run` measured in Node,
so the interleaved timing counts the model, not the pipe.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from svdq_edge.artifact.layout import model_file, model_files
from svdq_edge.errors import UserError

PACKAGE_FILES = ("package.json", "package-lock.json")  # the install folder is named by their hash
# copied in on every use
SCRIPTS = ("frames.mjs", "feed.mjs", "ort_session.mjs", "ort_browser.mjs", "browser.mjs", "tjs_tasks.mjs",
           "tjs_node.mjs", "tjs_browser.mjs")
NODE_MIN_MAJOR = 18
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
TYPES = {np.dtype(np.float32): "float32", np.dtype(np.int64): "int64", np.dtype(np.int32): "int32",
         np.dtype(np.bool_): "bool", np.dtype(np.uint8): "uint8", np.dtype(np.int8): "int8",
         np.dtype(np.float64): "float64"}
DTYPES = {v: k for k, v in TYPES.items()}


ORT_PACKAGES = ("onnxruntime-node", "onnxruntime-web")
NPM_PACKAGES = (*ORT_PACKAGES, "@huggingface/transformers", "puppeteer-core")  # what install_js checks for
PACKAGES = (*ORT_PACKAGES, "onnxruntime-web/webgpu")  # the last: onnxruntime-web's WebGPU/JSEP bundle


class NodeRuntimeError(UserError, RuntimeError):
    """Node, npm or an ONNX Runtime JavaScript package cannot serve the model; the message is one line."""


def edge_dir() -> Path:
    """runtime/edge: the pinned package.json, its lock file and the session script."""
    return Path(__file__).resolve().parents[1] / "edge"


def node_missing() -> str | None:
    """Why onnxruntime-node cannot run here (no node/npm, or node older than 18); None when it can."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return f"{'node' if node is None else 'npm'} is not installed (Node.js >= {NODE_MIN_MAJOR} with npm)"
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    m = re.match(r"v(\d+)", version)
    if m is None or int(m.group(1)) < NODE_MIN_MAJOR:
        return f"node {version or '?'} is older than {NODE_MIN_MAJOR}"
    return None


def chromium_path() -> str | None:
    """The browser the Chromium runtimes drive: $SVDQ_EDGE_CHROMIUM, else the first of CHROMIUM_NAMES on PATH."""
    given = os.environ.get("SVDQ_EDGE_CHROMIUM")
    if given:
        return given if Path(given).is_file() else None
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


def chromium_missing() -> str | None:
    """Why a page cannot run in headless Chromium here (no Node.js, or no browser); None when it can."""
    why = node_missing()
    if why is None and chromium_path() is None:
        why = "no Chromium (apt-get install chromium, or set SVDQ_EDGE_CHROMIUM)"
    return why


def js_dir() -> Path:
    """Where the pinned npm packages are installed: $SVDQ_EDGE_JS_DIR, else a cache folder per lock-file hash."""
    if os.environ.get("SVDQ_EDGE_JS_DIR"):
        return Path(os.environ["SVDQ_EDGE_JS_DIR"]).expanduser()
    digest = hashlib.sha256(b"".join((edge_dir() / f).read_bytes() for f in PACKAGE_FILES)).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "svdq-edge" / f"js-{digest}"


def install_js(target: Path | None = None) -> Path:
    """`npm ci` of the pinned packages into `target` (default js_dir()), once, and this version's scripts in a
    subfolder named by their hash (Node finds `node_modules` in a parent folder; two checkouts of different versions
    sharing the cache never overwrite each other's scripts); returns the scripts' folder. The install is written to a
    temporary sibling and renamed into place, so a failed or interrupted install leaves nothing half-made."""
    target = target or js_dir()
    if not all((target / "node_modules" / pkg / "package.json").is_file() for pkg in NPM_PACKAGES):
        _npm_ci(target)
    digest = hashlib.sha256(b"".join((edge_dir() / f).read_bytes() for f in SCRIPTS)).hexdigest()[:12]
    scripts = target / f"scripts-{digest}"
    scripts.mkdir(exist_ok=True)
    for name in SCRIPTS:
        _copy_if_changed(edge_dir() / name, scripts / name)
    return scripts


def _copy_if_changed(src: Path, dst: Path) -> None:
    data = src.read_bytes()
    if dst.is_file() and dst.read_bytes() == data:
        return
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(dst)  # atomic: a concurrent user reads the old or the new script, never half of one


def _npm_ci(target: Path) -> None:
    why = node_missing()
    if why is not None:
        raise NodeRuntimeError(f"ort-node cannot run: {why}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for f in PACKAGE_FILES:
            shutil.copy2(edge_dir() / f, tmp / f)
        env = os.environ | {"ONNXRUNTIME_NODE_INSTALL": "skip"}  # no CUDA download: the CPU binaries ship in npm
        done = subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                              cwd=tmp, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise NodeRuntimeError(f"npm ci of {', '.join(NPM_PACKAGES)} failed in {tmp}: {last}")
        try:
            tmp.rename(target)
        except OSError:  # another process installed it meanwhile
            if not (target / "node_modules").is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass(frozen=True)
class NodeArg:
    """An input or output of the model as the ONNX file declares it (ONNX Runtime's NodeArg shape)."""

    name: str
    shape: list


def _declared(model_path: Path) -> tuple[list[NodeArg], list[NodeArg]]:
    graph = onnx.load(str(model_path), load_external_data=False).graph
    init = {t.name for t in graph.initializer}

    def arg(v) -> NodeArg:
        return NodeArg(v.name, [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim])
    return [arg(v) for v in graph.input if v.name not in init], [arg(v) for v in graph.output]


class NodeSession:
    """A session of `package` (onnxruntime-node's CPU kernels, or onnxruntime-web's WASM) in a `node` child process,
    with `get_inputs()`, `get_outputs()` and `run(None, feed)` like an ONNX Runtime session. `last_run_s`: Node's
    own time of the last `run`."""

    def __init__(self, folder: Path, threads: int | None = None, package: str = "onnxruntime-node",
                 chromium: str | None = None):
        """`chromium`: the browser binary; the web packages then run in a headless Chromium page
        (runtime/edge/ort_browser.mjs) instead of in Node."""
        if package not in PACKAGES or (chromium is not None and package == "onnxruntime-node"):
            raise ValueError(f"package must be one of {PACKAGES} (a web one in Chromium), got {package!r}")
        path = model_file(folder)
        data = [str(p.resolve()) for p in model_files(folder) if p != path][:1]  # all our exports write one
        js = install_js()
        self.package = package if chromium is None else f"{package} in Chromium"
        self.in_browser = chromium is not None
        self._stderr = tempfile.TemporaryFile()
        args = [str(path.resolve()), str(threads or 0), package]
        args = ["ort_browser.mjs", *args, data[0] if data else "-", chromium] if chromium else \
            ["ort_session.mjs", *args, *data]
        self._proc = subprocess.Popen(["node", str(js / args[0]), *args[1:]], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=self._stderr)
        ready, _ = self._receive()
        self.version = ready.get("version")
        self.threads = ready.get("threads")  # what the runtime used (the JSEP bundle runs one thread under Node)
        self._rss_before_mb = ready["rss_before"] / 2**20
        self._inputs, self._outputs = _declared(path)  # after Node loaded it: a bad file gets Node's own error
        self.last_run_s: float | None = None

    @property
    def note(self) -> str:
        threads = f", {self.threads} thread{'s' * (self.threads != 1)}" if self.threads else ""
        return (f"{self.package} {self.version}" if self.version else self.package) + threads

    def rss_growth_mb(self) -> float | None:
        """The Node process's peak RSS (VmHWM) over its RSS before the model loaded, in MB: the model's own memory, as
        PeakRssGrowth measures it for a session in this process; None where /proc is absent, and in a browser (the
        model lives in Chromium's renderer process, not in Node)."""
        if self.in_browser:
            return None
        try:
            status = Path(f"/proc/{self._proc.pid}/status").read_text()
        except OSError:
            return None
        hwm = next((ln for ln in status.splitlines() if ln.startswith("VmHWM:")), None)
        return None if hwm is None else int(hwm.split()[1]) / 1024 - self._rss_before_mb

    def get_inputs(self) -> list[NodeArg]:
        return list(self._inputs)

    def get_outputs(self) -> list[NodeArg]:
        return list(self._outputs)

    def run(self, output_names, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Every output in the file's order (`output_names` must be None, as the evaluation passes it)."""
        if output_names is not None:
            raise ValueError("NodeSession.run returns every output; pass None")
        specs, parts = [], []
        for name, a in feed.items():
            a = np.ascontiguousarray(a)
            if a.dtype not in TYPES:
                raise UserError(f"ort-node: input {name!r} has dtype {a.dtype}, which the runtime does not take")
            specs.append({"name": name, "type": TYPES[a.dtype], "dims": list(a.shape), "bytes": a.nbytes})
            parts.append(a.tobytes())
        self._send({"tensors": specs}, b"".join(parts))
        header, payload = self._receive()
        self.last_run_s = float(header["seconds"])
        out, at = [], 0
        for t in header["tensors"]:
            out.append(np.frombuffer(payload, DTYPES[t["type"]], count=t["bytes"] // DTYPES[t["type"]].itemsize,
                                     offset=at).reshape(t["dims"]).copy())
            at += t["bytes"]
        return out

    def _send(self, header: dict, payload: bytes) -> None:
        data = json.dumps(header).encode()
        try:
            self._proc.stdin.write(struct.pack("<II", len(data), len(payload)) + data + payload)
            self._proc.stdin.flush()
        except BrokenPipeError:
            raise NodeRuntimeError(f"{self.package} exited: {self._last_stderr()}") from None

    def _receive(self) -> tuple[dict, bytes]:
        lengths = self._read(8)
        n_json, n_payload = struct.unpack("<II", lengths)
        header = json.loads(self._read(n_json))
        payload = self._read(n_payload)
        if "error" in header:
            raise NodeRuntimeError(f"{self.package}: {header['error']}")
        return header, payload

    def _read(self, n: int) -> bytes:
        chunks, left = [], n
        while left:
            chunk = self._proc.stdout.read(left)
            if not chunk:
                raise NodeRuntimeError(f"{self.package} exited: {self._last_stderr()}")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _last_stderr(self) -> str:
        self._stderr.seek(0)
        lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exit code {self._proc.poll()}"

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._stderr.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the child dies with its pipes
            pass
