"""Run one part of a student's submission in a separate, locked-down process.

The grader (:mod:`sensloc.coursework.grade`) never imports a submission. For every part it

1. writes the submission's source, the part's function name and its cases (plain data: NumPy
   arrays, numbers, strings, lists, dicts) to a fresh temporary folder;
2. runs THIS file as a script, ``python -I sandbox.py FOLDER`` (isolated mode: no environment
   variables, no user site, no current folder on ``sys.path``), which sets hard ``resource``
   limits on address space, CPU time and file size before it reads the submission; the grader
   stops it after a wall-clock timeout;
3. reads back the results the child wrote (``results.npz``, loaded with ``allow_pickle=False``:
   nothing the child wrote is ever unpickled) and compares them with the expected values, which
   never leave the grading process.

Before it runs a line of the submission, the child installs

* a ``sys.meta_path`` finder that refuses ``sensloc`` and every module found under the library's
  folders, and
* an audit hook (which, once added, cannot be removed) that refuses the same imports, reading
  any file under the library's folders or another process's ``/proc`` files, writing, renaming
  or deleting outside the temporary folder, starting or signalling processes, loading C
  libraries with ``ctypes`` and opening sockets.

Every refused attempt is recorded in the results as a *violation*; the grader scores the part 0
and says why. The submission therefore computes its answers with NumPy and nothing else: the
expected values stay out of its reach, and so do the grader's comparison functions.

This module imports only the standard library and NumPy (the child runs it without the library);
the grader imports it for :func:`write_bundle` and :func:`read_bundle`.
"""
import json
import os
import sys
import traceback

import numpy as np

#: The file names inside the temporary folder.
SUBMISSION, CASES, RESULTS, IMPORTED = "submission.py", "cases.npz", "results.npz", "imported"
#: The key of the JSON manifest inside a bundle (the arrays are stored beside it).
MANIFEST = "__manifest__"


# ------------------------------------------------------------------------------------ plain data

def _encode(value, arrays):
    """A JSON-able tree for ``value``; arrays go to ``arrays`` and are referenced by key."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            return {"__unsupported__": f"array of dtype {value.dtype}"}
        key = f"a{len(arrays)}"
        arrays[key] = value
        return {"__array__": key}
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return {"__float__": repr(float(value))}   # keeps NaN and infinity through JSON
    if isinstance(value, str) or value is None:
        return value
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, arrays) for v in value]}
    if isinstance(value, list):
        return [_encode(v, arrays) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"__dict__": {k: _encode(v, arrays) for k, v in value.items()}}
    return {"__unsupported__": type(value).__name__}


class Unsupported:
    """Stands for a value the child could not send as plain data (e.g. an arbitrary object)."""

    def __init__(self, type_name):
        self.type_name = type_name

    def __repr__(self):
        return f"<{self.type_name}>"


def _decode(tree, arrays):
    if isinstance(tree, list):
        return [_decode(v, arrays) for v in tree]
    if isinstance(tree, dict):
        if "__array__" in tree:
            return np.array(arrays[tree["__array__"]])
        if "__float__" in tree:
            return float(tree["__float__"])
        if "__tuple__" in tree:
            return tuple(_decode(v, arrays) for v in tree["__tuple__"])
        if "__dict__" in tree:
            return {k: _decode(v, arrays) for k, v in tree["__dict__"].items()}
        if "__unsupported__" in tree:
            return Unsupported(str(tree["__unsupported__"]))
        raise ValueError("malformed bundle")
    return tree


def write_bundle(path, value):
    """Write plain data (see :func:`_encode`) to ``path`` as an ``.npz``: arrays plus a JSON manifest."""
    arrays = {}
    manifest = json.dumps(_encode(value, arrays))
    arrays[MANIFEST] = np.frombuffer(manifest.encode("utf-8"), dtype=np.uint8)
    with open(path, "wb") as file:
        np.savez(file, **arrays)


def read_bundle(path):
    """The plain data of :func:`write_bundle`; never unpickles (``allow_pickle=False``)."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    manifest = arrays.pop(MANIFEST)
    if manifest.dtype != np.uint8 or manifest.ndim != 1:
        raise ValueError("malformed bundle")
    return _decode(json.loads(manifest.tobytes().decode("utf-8")), arrays)


# ------------------------------------------------------------------------------------ the child

def _inside(path, folders):
    try:
        path = os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
        return False
    return any(path == f or path.startswith(f + os.sep) for f in folders)


def _lock_down(workdir, library_dirs, violations):
    """Install the import blocker and the audit hook (see the module docstring).

    ``library_dirs`` is the library's folder (the whole repository for an editable install, with
    its tests and answer keys). Python itself and NumPy stay readable even when installed inside
    it (a virtual environment in the repository).
    """
    import importlib.abc
    # Folders of Python and its packages (fixed now: sys.path as the interpreter set it up) that
    # lie INSIDE the library's folder are exempt, e.g. a virtual environment in the repository.
    python = {os.path.realpath(p) for p in sys.path + [sys.prefix, sys.base_prefix, sys.exec_prefix]
              if p and os.path.isdir(p)}
    exempt = [p for p in python if _inside(p, library_dirs) and p not in library_dirs]

    def library(path):
        return _inside(path, library_dirs) and not _inside(path, exempt)

    def refused(name):
        return name == "sensloc" or name.startswith("sensloc.")

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if refused(name):
                violations.append(f"imports the library (`{name}`)")
                raise ImportError(f"the grader refuses `import {name}`: use NumPy only")
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    if spec.origin and library(spec.origin):
                        violations.append(f"imports a module of the library (`{name}`)")
                        raise ImportError(f"the grader refuses `import {name}` (part of the library)")
                    return None   # allowed: let the normal machinery import it
            return None

    sys.meta_path.insert(0, Blocker())
    processes = ("os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
                 "subprocess.Popen", "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill")

    changes = ("os.rename", "os.remove", "os.rmdir", "os.mkdir", "os.truncate", "os.chmod", "os.chown",
               "os.link", "os.symlink", "os.utime", "shutil.copyfile", "shutil.move", "shutil.rmtree")
    own = {str(os.getpid()), "self", "thread-self"}

    def other_process(path):
        """``/proc/PID/...`` of another process (e.g. the grader's memory), not this one's."""
        parts = os.path.abspath(os.fsdecode(path)).split(os.sep)
        return len(parts) > 2 and parts[1] == "proc" and parts[2] not in own and (
            parts[2].isdigit() or len(parts) > 3)

    def hook(event, args):
        if event == "import" and args and isinstance(args[0], str) and refused(args[0]):
            violations.append(f"imports the library (`{args[0]}`)")
            raise ImportError(f"the grader refuses `import {args[0]}`: use NumPy only")
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            path, mode = args[0], args[1] if len(args) > 1 else "r"
            if other_process(path):
                violations.append(f"opens another process's files ({os.fsdecode(path)})")
                raise PermissionError(f"the grader refuses to open {os.fsdecode(path)}")
            if library(path):
                violations.append(f"opens a file of the library ({os.fsdecode(path)})")
                raise PermissionError(f"the grader refuses to open {os.fsdecode(path)}")
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(args[2] if len(args) > 2 else None, int) and args[2] & (os.O_WRONLY | os.O_RDWR))
            if writing and not _inside(path, [workdir]):
                violations.append(f"writes outside its folder ({os.fsdecode(path)})")
                raise PermissionError(f"the grader refuses to write {os.fsdecode(path)}")
        elif event in changes:
            for path in args:
                if isinstance(path, (str, bytes, os.PathLike)) and not _inside(path, [workdir]):
                    violations.append(f"changes a file outside its folder ({event} {os.fsdecode(path)})")
                    raise PermissionError(f"the grader refuses {event} outside the submission's folder")
        elif event in processes:
            violations.append(f"starts or signals a process ({event})")
            raise PermissionError(f"the grader refuses {event}")
        elif event.startswith("ctypes.") or event in ("socket.connect", "socket.bind"):
            violations.append(f"uses {event}")
            raise PermissionError(f"the grader refuses {event}")

    sys.addaudithook(hook)


def _student_line(error, source_lines, filename):
    """``(line N: code)`` of the innermost frame of the submission in the traceback, or ``""``."""
    # lookup_lines=False: reading the source of the runner's own frames would open library files
    summary = traceback.StackSummary.extract(traceback.walk_tb(error.__traceback__), lookup_lines=False)
    frames = [f for f in summary if f.filename == filename]
    if isinstance(error, SyntaxError) and error.filename == filename and error.lineno:
        frames = [traceback.FrameSummary(filename, error.lineno, "")]
    if not frames:
        return ""
    number = frames[-1].lineno
    code = source_lines[number - 1].strip() if number and 0 < number <= len(source_lines) else ""
    return f" (line {number}: {code})" if code else f" (line {number})"


def _error(error, source_lines, filename):
    return {"type": type(error).__name__, "message": str(error)[:2000],
            "where": _student_line(error, source_lines, filename)}


def child(workdir):
    """The child's main: load the submission, call the function on every case, write the results."""
    workdir = os.path.realpath(workdir)
    job = read_bundle(os.path.join(workdir, CASES))
    violations = []
    results = {"violations": violations, "import_error": None, "missing": False, "cases": []}
    filename = os.path.join(workdir, SUBMISSION)
    with open(filename, encoding="utf-8") as file:
        source = file.read()
    source_lines = source.splitlines()
    import resource
    for name, value in job["limits"].items():   # hard limits: the submission cannot raise them
        resource.setrlimit(getattr(resource, name), (value, value))
    _lock_down(workdir, [os.path.realpath(d) for d in job["library_dirs"]], violations)
    import types
    module = types.ModuleType("submission")
    module.__file__ = filename
    sys.modules["submission"] = module
    try:
        exec(compile(source, filename, "exec"), module.__dict__)
    except BaseException as error:  # noqa: B036 - a submission may raise anything, even SystemExit
        results["import_error"] = _error(error, source_lines, filename)
    results["import_violations"] = list(violations)   # refused at import, even if the file caught it
    with open(os.path.join(workdir, IMPORTED), "w"):  # tells the grader that a timeout came later
        pass
    function = getattr(module, job["function"], None)
    if results["import_error"] is None and not callable(function):
        results["missing"] = True
    elif results["import_error"] is None:
        for args in job["cases"]:
            try:
                with np.errstate(all="ignore"):
                    got = function(*args)
                results["cases"].append({"result": got})
            except NotImplementedError as error:
                results["cases"].append({"not_implemented": str(error) or "NotImplementedError"})
                break
            except BaseException as error:  # noqa: B036
                results["cases"].append({"error": _error(error, source_lines, filename)})
    results["violations"] = list(violations)
    write_bundle(os.path.join(workdir, RESULTS), results)


if __name__ == "__main__":
    child(sys.argv[1])
