"""Training curves: critic and generator losses, Wasserstein estimates and tile sizes per
member over the run's logged steps (matplotlib); the member asked for is drawn bold. Four
panels in two rows, about 650 px wide, so the text stays legible where the picture is shown
at the width of a page column."""

from __future__ import annotations

import io

from PIL import Image

from kgan_core.render import member_colour, titled_figure
from kgan_core.visualise.base import Visualisation, rounded, title_for
from kgan_core.visualise.errors import VisualisationError


def _legend_within(fig, handles: list, labels: list[str]) -> int:
    """Put the legend under the panels with as many columns as fit the figure's width (six columns
    of "member j" ran past both edges at ten members, cutting off member 0's line and member 9's
    name); returns its number of rows."""
    fig_width = fig.get_window_extent().width
    renderer = fig.canvas.get_renderer()
    ncol = max(1, min(len(labels), 6))
    while True:
        legend = fig.legend(handles, labels, loc="lower center", fontsize=9, ncol=ncol, frameon=False)
        if ncol == 1 or legend.get_window_extent(renderer).width <= fig_width - 4:
            return -(-len(labels) // ncol)
        legend.remove()
        ncol -= 1


def training_curves(run, member: int | None = None, *, seed: int = 0) -> Visualisation:
    if member is not None:
        run.check_member(member)
    history = run.history
    if not history:
        raise VisualisationError("this run has no logged training steps yet; train it (or wait for its first log)")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    steps = [h["step"] for h in history]
    panels = [("wasserstein", "Wasserstein estimate"), ("d_loss", "critic loss"), ("g_loss", "generator loss"),
              ("tile_sizes", "tile size")]
    fig, axes = plt.subplots(2, 2, figsize=(7.2, 5.4), dpi=90, sharex=True)
    for ax, (key, label) in zip(axes.flat, panels, strict=True):
        for j in range(run.k):
            ys = [h[key][j] for h in history]
            bold = member is None or j == member
            ax.plot(steps, ys, lw=1.8 if member == j else 1.0, alpha=1.0 if bold else 0.25,
                    color=member_colour(j), label=f"member {j}" if bold else None)
        if key == "wasserstein":  # the health check flags an estimate below 0: show where 0 is
            ax.axhline(0.0, color="#888888", lw=0.8, ls=":")
        ax.set_title(label, fontsize=11)
        ax.tick_params(labelsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("step", fontsize=10)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    rows = _legend_within(fig, handles, labels)
    fig.tight_layout(rect=(0, 0.045 * rows, 1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    title = title_for(run, "training curves", member, seed, f"{len(steps)} logged steps")
    image = titled_figure(Image.open(buf).convert("RGB"), title)
    last = history[-1]
    who = range(run.k) if member is None else [member]
    numbers = {"logged_steps": len(steps), "last_step": steps[-1], "members": {
        str(j): rounded({key: last[key][j] for key, _ in panels}) for j in who}}
    return Visualisation("training-curves", member, seed, title, image, numbers)
