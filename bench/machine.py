"""What machine a benchmark ran on: named in every results file (figures differ up to 2x
between hosts of one type, so only ratios measured in one run are compared)."""
import os
import platform


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
