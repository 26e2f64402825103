"""A Trainer's history (one dict per epoch: epoch, objective, seconds, step, and
validation_objective where fit had validation data) shown to a user: the per-epoch table
`hogwildc train` prints, and the objective-against-time curve of `--plot`."""
from __future__ import annotations

import sys


def fmt_num(x, spec=".6g") -> str:
    """A number for a table cell; `-` when there is none."""
    if x is None:
        return "-"
    try:
        return format(float(x), spec)
    except (TypeError, ValueError):
        return str(x)


def has_validation(history) -> bool:
    return any(h.get("validation_objective") is not None for h in history)


def best_validation(history) -> dict:
    """The entry of the first epoch with the lowest validation objective."""
    scored = [h for h in history if h.get("validation_objective") is not None]
    return min(scored, key=lambda h: h["validation_objective"])


def print_history(history, out=None) -> None:
    """The per-epoch table: epoch, objective, the validation objective where there is one,
    seconds, step."""
    out = out or sys.stdout
    validation = has_validation(history)
    print(f"{'epoch':>6}  {'objective':>14}  " + (f"{'validation':>14}  " if validation else "")
          + f"{'seconds':>9}  {'step':>10}", file=out)
    for h in history:
        objective = fmt_num(h.get('objective'), '.8g') + ("~" if h.get("sampled_terms") else " ")
        print(f"{fmt_num(h.get('epoch'), 'g'):>6}  {objective:>15} "
              + (f"{fmt_num(h.get('validation_objective'), '.8g'):>14}  " if validation else "")
              + f"{fmt_num(h.get('seconds'), '.3f'):>9}  {fmt_num(h.get('step'), '.4g'):>10}",
              file=out)
    sampled = {h["sampled_terms"] for h in history if h.get("sampled_terms")}
    if sampled:
        print(f"~ the mean over a fixed random sample of {', '.join(map(str, sorted(sampled)))} "
              "of the terms (an estimate, cheaper than a pass; exact after a fit's last epoch)",
              file=out)


def cumulative_seconds(history) -> list[float]:
    """The training time at the end of each epoch."""
    total, out = 0.0, []
    for h in history:
        total += float(h.get("seconds") or 0.0)
        out.append(total)
    return out


def plot_formats() -> list[str]:
    """The file extensions matplotlib writes (png, pdf, svg, ...)."""
    from matplotlib.backend_bases import FigureCanvasBase
    return sorted(FigureCanvasBase.get_supported_filetypes())


def plot_history(history, path: str, title: str) -> None:
    """Save the objective (and the validation objective) against cumulative seconds as a PNG;
    OSError if it cannot be written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    xs = cumulative_seconds(history)
    ys = [h.get("objective") for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, ys, marker="o", markersize=3, label="training")
    if has_validation(history):
        ax.plot(xs, [h.get("validation_objective") for h in history], marker="s",
                markersize=3, label="validation")
        ax.legend()
    ax.set_xlabel("seconds (cumulative)")
    ax.set_ylabel("objective")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    try:
        fig.savefig(path)
    finally:
        plt.close(fig)
