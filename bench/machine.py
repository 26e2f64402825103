"""What machine a benchmark ran on: named in every results file (figures differ up to 2x
between hosts of one type, so only ratios measured in one run are compared); and the tree of
an older revision, for benchmarks that measure before and after side by side."""
import os
import platform
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def machine() -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return {"host": platform.node(), "cpu": cpu, "cores": cores,
            "python": platform.python_version(), "platform": platform.platform()}


def snapshot(rev: str, folder: Path) -> Path:
    """The package as it was at `rev`, laid out as installed (grammar, templates and specs
    inside it, where an editable install maps them), importable by putting `folder` on
    PYTHONPATH: run from it, a benchmark measures `rev`'s code, templates included."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True,
                             capture_output=True).stdout
    folder.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    for data in ("grammar", "templates", "specs"):
        shutil.rmtree(folder / "hogwild_dsl" / data, ignore_errors=True)
        shutil.move(str(folder / data), str(folder / "hogwild_dsl" / data))
    return folder
