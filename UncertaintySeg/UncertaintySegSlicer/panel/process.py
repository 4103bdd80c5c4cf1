"""Background runs of `uncertaintyseg` in a child process, polled without ever blocking the caller.

Free of Qt (and of slicer), so it is tested here; the module's Widget polls it from a `qt.QTimer`:

    process = CliProcess("predict", predictArguments(image, out, model="hippocampus", method="mc_dropout")).start()
    # every 100 ms, on the GUI thread:
    events, state = process.poll()             # new {"stage": ..., "fraction": ...} objects; never blocks
    if events: progressBar.value = 100 * events[-1]["fraction"]; statusLabel.text = events[-1]["stage"]
    if state == SUCCEEDED: load the files under `out`;  if state == FAILED: show process.errorMessage
    # Cancel button:
    process.cancel()                           # kills the process group, returns within 2 s

A console script blocks instead: `state = process.wait(timeout)`.

The child runs in its own session (POSIX) or process group (Windows), so cancel kills it and every
process it started (Slicer's `PythonSlicer` is a launcher that starts the real interpreter as a child).
Both pipes are drained by one reader thread each, so a child writing a lot to stderr never stalls.
`uncertaintyseg` writes its output folder whole or not at all through a staging folder `.<name>.<pid>@<host>.XXXXXXXX`
beside it (removed by the CLI itself on SIGTERM; the next run there reclaims a killed run's); a kill leaves that
staging folder behind, so cancel (and a failure) removes the staging folders this run created and, on cancel,
an output folder this run created: the disk is as it was.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"

MODULE_FOLDER = Path(__file__).resolve().parents[2]  # holds UncertaintySegLib/
CLI_MODULE = "UncertaintySegLib.cli"
# The CLI's own message: "error: ..." (cli.py), or argparse's "uncertaintyseg predict: error: ...".
ERROR_LINE = re.compile(r"^(?:[\w.-]+(?: [\w.-]+)*: )?error: (?P<message>.+)$")
# tempfile.mkdtemp names: the prefix and 8 characters of tempfile's alphabet.
_TEMP_SUFFIX = r"[a-z0-9_]{8}"
_OWNER = r"(?:\d+@[A-Za-z0-9_-]+\.)?"  # `<pid>@<host>.` (UncertaintySegLib/output_folders.py); absent in older CLIs


def pythonExecutable():
    """The interpreter to run the CLI with: this one, or Slicer's `PythonSlicer` inside the application.

    Inside the Slicer application `sys.executable` is Slicer itself, which would open a second Slicer.
    """
    if Path(sys.executable).name.lower().startswith("python"):
        return sys.executable
    found = shutil.which("PythonSlicer")
    if not found:
        raise RuntimeError(f"no Python interpreter to run {CLI_MODULE}: this process is {sys.executable} and PythonSlicer "
                           "is not on PATH; pass python= the path of PythonSlicer (beside the Slicer executable).")
    return found


def cliEnvironment(base=None):
    """Environment for the child: UncertaintySegLib importable, UTF-8 unbuffered output."""
    environment = dict(os.environ if base is None else base)
    paths = [str(MODULE_FOLDER)] + [p for p in environment.get("PYTHONPATH", "").split(os.pathsep) if p]
    environment["PYTHONPATH"] = os.pathsep.join(paths)
    environment["PYTHONIOENCODING"] = "utf-8"
    environment["PYTHONUNBUFFERED"] = "1"
    return environment


def predictArguments(image, out, model=None, probabilities=None, classNames=None, method=None, samples=None, seed=None,
                     ttaAxes=None, device=None, calibrator=None, insertDropout=None, dropoutP=None, saveSamples=False,
                     normalizeUncertainty=False, flagThreshold=None, overwrite=False, featureMaps=None, trustBundle=False):
    """Arguments of `uncertaintyseg predict` (after the command name) from plain values; None keeps the CLI default.

    `model`: a bundled model name or a path, or a list of them (the members of one ensemble);
    `probabilities`: saved probabilities instead (exclusive with `model`), with `classNames` a list.
    `featureMaps`: `LAYER[=mean|max|0,3,5]` strings for `--feature-maps`; an empty list: the default layers.
    `trustBundle`: `--trust-bundle`, MONAI's parser runs a bundle's config code (the user ticked that they trust it).
    """
    if (model is None) == (probabilities is None):
        raise ValueError("predict needs exactly one of model= (a model name or path) and probabilities= (a saved file).")
    arguments = ["--image", str(image), "--out", str(out)]
    if model is not None:
        models = [model] if isinstance(model, (str, os.PathLike)) else list(model)
        arguments += ["--model", *(str(m) for m in models)]
    else:
        arguments += ["--probabilities", str(probabilities)]
    if classNames is not None:
        arguments += ["--class-names", classNames if isinstance(classNames, str) else ",".join(classNames)]
    if ttaAxes is not None and not isinstance(ttaAxes, str):
        ttaAxes = ",".join(str(axis) for axis in ttaAxes)
    options = {"--method": method, "--samples": samples, "--seed": seed, "--tta-axes": ttaAxes, "--device": device,
               "--calibrator": calibrator, "--insert-dropout": insertDropout, "--dropout-p": dropoutP,
               "--flag-threshold": flagThreshold}
    for option, value in options.items():
        if value is not None:
            arguments += [option, str(value)]
    flags = {"--save-samples": saveSamples, "--normalize-uncertainty": normalizeUncertainty, "--overwrite": overwrite,
             "--trust-bundle": trustBundle}
    arguments += [flag for flag, on in flags.items() if on]
    if featureMaps is not None:
        arguments += ["--feature-maps", *(str(layer) for layer in featureMaps)]
    return arguments


class BackgroundProcess:
    """Any command line in a child process: JSON progress lines from stdout, the whole log, state, cancel.

    `outputFolder`: the folder the child writes whole-or-nothing through `.<name>.<pid>@<host>.XXXXXXXX` staging
    folders beside it (None: nothing to clean up on cancel). `logPath`: also write the log there.
    """

    gracePeriod = 0.5  # seconds between SIGTERM and SIGKILL on cancel
    pipeDrainPeriod = 1.0  # after the child exits, wait this long for processes it left holding the pipes

    def __init__(self, commandLine, environment=None, outputFolder=None, logPath=None, name=None):
        self.commandLine = [str(part) for part in commandLine]
        self.environment = environment
        self.outputFolder = Path(outputFolder).absolute() if outputFolder is not None else None
        self.logPath = Path(logPath) if logPath is not None else None
        self.name = name or Path(self.commandLine[0]).name
        self.state = None  # RUNNING once started
        self.returnCode = None
        self.errorMessage = ""
        self.events = []  # every progress object so far
        self._polled = 0  # events already returned by poll()
        self._lines = []  # (stream, text) in arrival order
        self._linesLock = threading.Lock()  # lines, events, log file: shared with the reader threads
        self._stateLock = threading.RLock()  # state changes: poll, wait, cancel
        self._process = self._readers = self._logFile = None
        self._startTime = self._endTime = self._exitSeenTime = None

    # --- start --------------------------------------------------------------------------------
    def start(self):
        if self._process is not None:
            raise RuntimeError(f"{self.name} was already started.")
        self._recordOutputFolderBefore()
        if self.logPath is not None:
            self.logPath.parent.mkdir(parents=True, exist_ok=True)
            self._logFile = open(self.logPath, "w", encoding="utf-8")
        options = {}
        if os.name == "nt":
            options["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
        else:
            options["start_new_session"] = True  # its own process group: cancel reaches its children
        try:
            self._process = subprocess.Popen(self.commandLine, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, env=self.environment, **options)
        except OSError as error:
            self._closeLog()
            raise RuntimeError(f"could not start {self.name} ({self.commandLine[0]}): {error}") from error
        self._startTime = time.monotonic()
        self.state = RUNNING
        self._readers = [threading.Thread(target=self._read, args=(self._process.stdout, "stdout"), daemon=True),
                         threading.Thread(target=self._read, args=(self._process.stderr, "stderr"), daemon=True)]
        for reader in self._readers:
            reader.start()
        return self

    def _read(self, pipe, stream):
        """Reader thread: one line at a time until EOF, so the child never blocks on a full pipe."""
        for raw in iter(pipe.readline, b""):
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            self._addLine(stream, text, _progressEvent(text) if stream == "stdout" else None)
        pipe.close()

    def _addLine(self, stream, text, event=None):
        with self._linesLock:
            self._lines.append((stream, text))
            if event is not None:
                self.events.append(event)
            if self._logFile is not None:
                self._logFile.write(text + "\n")
                self._logFile.flush()

    # --- poll, wait ---------------------------------------------------------------------------
    def poll(self):
        """(new progress events since the last poll, state). Never blocks."""
        with self._stateLock:
            if self.state == RUNNING:
                self._update()
            with self._linesLock:
                events = self.events[self._polled:]
                self._polled = len(self.events)
            return events, self.state

    def wait(self, timeout=None):
        """Block until the run ends or `timeout` seconds pass; the state (RUNNING if it timed out).

        Events stay for the next poll(); all of them are in `events`.
        """
        if self._process is None:
            raise RuntimeError(f"{self.name} was not started: call start() first.")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._stateLock:
                if self.state == RUNNING:
                    self._update()
                if self.state != RUNNING:
                    return self.state
            remaining = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            if remaining <= 0:
                return self.state
            if self._process.poll() is not None:
                time.sleep(remaining)  # exited; its output is still being read
                continue
            try:
                self._process.wait(remaining)
            except subprocess.TimeoutExpired:
                pass

    def _update(self):
        code = self._process.poll()
        if code is None:
            return
        now = time.monotonic()
        if self._exitSeenTime is None:
            self._exitSeenTime = now
        if any(reader.is_alive() for reader in self._readers):
            if now - self._exitSeenTime < self.pipeDrainPeriod:
                return  # output still arriving: end only once it is all read
            self._signalGroup(signal.SIGKILL if os.name != "nt" else None)  # leftovers holding the pipes
            self._joinReaders(0.5)
        self.returnCode = code
        if code == 0:
            self._finish(SUCCEEDED)
        else:
            self.errorMessage = self._errorMessage(code)
            self._removeStagingFolders(removeNewOutput=False)
            self._finish(FAILED)

    def _finish(self, state):
        self._endTime = time.monotonic()
        self.state = state
        self._closeLog()

    # --- cancel -------------------------------------------------------------------------------
    def cancel(self):
        """Kill the child and its process group and remove what it half-wrote; returns within ~2 s.

        Returns the state: CANCELLED, or SUCCEEDED/FAILED when the run had already ended.
        """
        with self._stateLock:
            if self.state != RUNNING:
                return self.state
            if self._process.poll() is not None:  # ended on its own before the cancel: report that
                self.wait(self.pipeDrainPeriod + 1.0)
                return self.state
            if os.name == "nt":
                self._signalGroup(None)
            else:
                self._signalGroup(signal.SIGTERM)
                try:
                    self._process.wait(self.gracePeriod)
                except subprocess.TimeoutExpired:
                    pass
                self._signalGroup(signal.SIGKILL)  # also any member that outlived the leader
            try:
                self._process.wait(1.0)
            except subprocess.TimeoutExpired:  # stuck in the kernel (e.g. a dead network share); reaped later
                self._addLine("cancel", f"{self.name} (pid {self._process.pid}) had not exited 1 s after SIGKILL")
            self.returnCode = self._process.returncode
            self._joinReaders(0.3)
            self._removeStagingFolders(removeNewOutput=True)
            self._finish(CANCELLED)
            return self.state

    def _signalGroup(self, signalNumber):
        """Send `signalNumber` to the child's whole process group (Windows: kill its process tree)."""
        try:
            if os.name == "nt":
                subprocess.run(["taskkill", "/F", "/T", "/PID", str(self._process.pid)], capture_output=True, timeout=1.5)
            else:
                os.killpg(self._process.pid, signalNumber)  # the child leads its own session: pgid == pid
        except (ProcessLookupError, PermissionError, subprocess.TimeoutExpired):
            pass  # already gone

    def _joinReaders(self, timeout):
        deadline = time.monotonic() + timeout
        for reader in self._readers:
            reader.join(max(0.0, deadline - time.monotonic()))

    # --- outputs left behind ------------------------------------------------------------------
    def _stagingPattern(self):
        name = re.escape(self.outputFolder.name)
        return re.compile(rf"^\.{name}\.(?:old\.)?{_OWNER}{_TEMP_SUFFIX}$")

    def _stagingFolders(self):
        parent = self.outputFolder.parent
        if not parent.is_dir():
            return set()
        pattern = self._stagingPattern()
        return {entry.name for entry in parent.iterdir() if pattern.match(entry.name)}

    def _recordOutputFolderBefore(self):
        if self.outputFolder is not None:
            self._outputExistedBefore = self.outputFolder.exists()
            self._stagingBefore = self._stagingFolders()

    def _removeStagingFolders(self, removeNewOutput):
        """Remove the staging folders this run created; on cancel also an output folder it created.

        Killed between the CLI's two renames of an --overwrite run, the previous output sits in
        `.<name>.old.XXXXXXXX/<name>`: it is moved back.
        """
        if self.outputFolder is None:
            return
        folder, parent = self.outputFolder, self.outputFolder.parent
        for name in sorted(self._stagingFolders() - self._stagingBefore):
            retiredOutput = parent / name / folder.name
            if ".old." in name and retiredOutput.is_dir() and not folder.exists():
                os.replace(retiredOutput, folder)
                self._addLine("cancel", f"restored the previous {folder} from {parent / name}")
            self._removeTree(parent / name)
        if removeNewOutput and not self._outputExistedBefore and folder.exists():
            self._removeTree(folder)

    def _removeTree(self, path):
        shutil.rmtree(path, ignore_errors=True)
        message = f"removed {path}" if not path.exists() else f"could not remove {path}: remove it by hand"
        self._addLine("cancel", message)

    # --- results ------------------------------------------------------------------------------
    def _errorMessage(self, code):
        with self._linesLock:
            lines = list(self._lines)
        for stream, text in reversed(lines):
            match = ERROR_LINE.match(text.strip()) if stream == "stderr" else None
            if match:
                return match.group("message")
        if code < 0:
            try:
                cause = signal.Signals(-code).name
            except ValueError:
                cause = f"signal {-code}"
            return f"{self.name} was killed by {cause} (out of memory?); see the log."
        last = next((text for stream, text in reversed(lines) if stream == "stderr" and text.strip()), "")
        return f"{self.name} failed with exit code {code}" + (f": {last.strip()}" if last else "") + "; see the log."

    @property
    def log(self):
        """stdout and stderr, line by line in arrival order (and what cancel cleaned up)."""
        with self._linesLock:
            return "".join(text + "\n" for _, text in self._lines)

    @property
    def elapsedSeconds(self):
        if self._startTime is None:
            return 0.0
        return (self._endTime if self._endTime is not None else time.monotonic()) - self._startTime

    @property
    def pid(self):
        return None if self._process is None else self._process.pid

    @property
    def lastEvent(self):
        """The latest progress object, or None."""
        with self._linesLock:
            return self.events[-1] if self.events else None

    def _closeLog(self):
        with self._linesLock:
            if self._logFile is not None:
                self._logFile.close()
                self._logFile = None


class CliProcess(BackgroundProcess):
    """`python -m UncertaintySegLib.cli <command> <arguments> --progress json` in the background.

    `python`: the interpreter (default: `pythonExecutable()`, PythonSlicer inside Slicer). The output
    folder to clean up on cancel is the arguments' `--out`.
    """

    def __init__(self, command, arguments, python=None, logPath=None, environment=None):
        arguments = [str(argument) for argument in arguments]
        if "--progress" in arguments:
            raise ValueError("CliProcess adds --progress json itself (it reads those lines); remove --progress.")
        out = arguments[arguments.index("--out") + 1] if "--out" in arguments[:-1] else None
        commandLine = [python or pythonExecutable(), "-m", CLI_MODULE, command, *arguments, "--progress", "json"]
        super().__init__(commandLine, cliEnvironment(environment), outputFolder=out, logPath=logPath,
                         name=f"uncertaintyseg {command}")
        self.command = command


def _progressEvent(text):
    """The progress object of a stdout line, or None for any other line (kept in the log only)."""
    if not text.startswith("{"):
        return None
    try:
        event = json.loads(text)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "stage" in event and "fraction" in event else None
