"""Planning in Two Rooms with learned world models: which encoder plans best, and at what cost.

    python bench/planning.py                 # everything missing under runs/planning_bench/, then the table
    python bench/planning.py --report-only   # the table from what is there
    python bench/planning.py --episodes 20 --quick   # a smaller grid (fewer steps and episodes)

Stages, each cached (a stage whose output exists is not run again; delete its folder to redo it):

1. ``videojepa world collect``: exploratory trajectories, random layouts (wall and door drawn per episode): 3000
   episodes of 33 frames, 1200 (seed 0) and 4000 (seed 1) of 97 frames for the temporal-distance head (it
   learns distances up to the window's length), and 1000 of 385 frames (seed 4, 30% of them pushing the wall
   between the rooms) for the ``*-spread*`` rows.
2. V-JEPA pretraining on the environment's own videos (``world export-videos``, then ``videojepa pretrain`` with
   the ``cpu_demo`` recipe on them).
3. ``videojepa world train`` for each encoder: ``conv`` (trained jointly, eb_jepa's anti-collapse terms),
   ``conv-metric`` (the same with a temporal-distance head, planned with ``--energy metric``), ``conv-metric-4k``
   (the same on 4000 long episodes for 3000 steps, with the null-action term), ``conv-scene`` (``conv-metric-4k``
   with rollouts from 12 frames of each window, the stopped moves weighted 5x, and the same-episode contrastive
   term that asks the latent to hold the layout), ``conv-map`` (the latent is the conv encoder's 8x8 feature map,
   the predictor a residual CNN on it with the action broadcast to every cell, stopped moves weighted 5x; 2000
   steps; trained with its predictions re-normalised, as measured, before that stopped being the default),
   ``conv-map-spread`` (``conv-map`` without re-normalisation on the 385-frame episodes, 17-frame windows, the
   temporal-distance term on 97 frames drawn across each whole episode; 3000 steps), ``conv-spread`` (the same
   data and terms on the pooled ``conv`` latent, whose distance head reads one vector instead of a feature map),
   ``conv-spread-step`` (``conv-spread`` with the hinge that holds consecutive frames within a step in the head's
   distance, ``loss.metric_step=10``), ``conv-spread-step-s2`` (a second stage: ``conv-spread-step``'s encoder and
   heads frozen, a fresh ``bilinear`` predictor trained alone for 3000 steps on the cached latents, 64 windows a
   step),
   ``pixels`` (pooled, frozen), ``vit-random`` (frozen random ViT), ``vit-vjepa`` (frozen V-JEPA-pretrained ViT),
   and ``vit-vjepa-ac`` (the same features with V-JEPA 2-AC's block-causal transformer predictor).
4. ``videojepa plan`` on 50 fixed evaluation episodes, on the random-layout task and on the fixed layout, and on
   the same-room diagnostic (start and goal in one room: greedy descent suffices), for every world model and for
   the baselines (oracle with the geodesic cost on the true dynamics, the same with the
   straight-line cost, the data's random policy, standing still); CEM vs MPPI and summed vs last-step energy for
   the best world model.

Writes ``runs/planning_bench/results.json`` and prints the Markdown table that ``bench/RESULTS_planning.md`` holds.
Wall times are whole-process figures on this machine; training minutes come from each run's ``summary.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path("runs/planning_bench")
VJ = [sys.executable, "-m", "videojepa"]

# the temporal-distance term on 97 frames drawn across each 385-frame episode, the predictor on 17-frame windows
SPREAD = ["model.metric_dim=64", "loss.metric=10", "loss.metric_rollout=3", "loss.stay=1", "loss.blocked=4",
          "data.window=17", "data.batch_size=16", "data.val_episodes=32", "data.metric_frames=97"]
WORLDS = {
    "conv": ["model.encoder=conv"],
    "conv-metric": ["model.encoder=conv", "model.metric_dim=64", "loss.metric=10", "loss.metric_rollout=3",
                    "data.window=97", "data.batch_size=12", "data.val_episodes=32"],
    "conv-metric-4k": ["model.encoder=conv", "model.metric_dim=64", "loss.metric=10", "loss.metric_rollout=3",
                       "loss.stay=1", "data.window=97", "data.batch_size=12", "data.val_episodes=32"],
    "conv-scene": ["model.encoder=conv", "model.metric_dim=64", "loss.metric=10", "loss.metric_rollout=3",
                   "loss.stay=1", "loss.rollout_starts=12", "loss.blocked=4", "model.scene_dim=32", "loss.scene=1",
                   "data.window=97", "data.batch_size=12", "data.val_episodes=32"],
    "conv-map": ["model.encoder=conv_map", "model.predictor=conv", "model.hidden=32", "model.renormalize=true",
                 "model.metric_dim=64",
                 "loss.metric=10", "loss.metric_rollout=3", "loss.stay=1", "loss.blocked=4", "data.window=97",
                 "data.batch_size=12", "data.val_episodes=32"],
    "conv-map-spread": ["model.encoder=conv_map", "model.predictor=conv", "model.hidden=32", *SPREAD],
    "conv-spread": ["model.encoder=conv", *SPREAD],
    "conv-spread-step": ["model.encoder=conv", *SPREAD, "loss.metric_step=10"],
    # a second stage: conv-spread-step's encoder and heads frozen, a bilinear predictor trained alone on cached latents
    "conv-spread-step-s2": ["model.encoder=conv", *SPREAD, "loss.metric_step=10", "data.batch_size=64",
                            "model.init={root}/world-conv-spread-step", "model.freeze=[encoder, metric, probe]",
                            "model.predictor=bilinear"],
    "pixels": ["model.encoder=pixels"],
    "vit-random": ["model.encoder=vit", "model.vit_init=random"],
    "vit-vjepa": ["model.encoder=vit", "model.vit_init={vjepa}"],
    "vit-vjepa-ac": ["model.encoder=vit", "model.vit_init={vjepa}", "model.predictor=ac", "model.hidden=128",
                     "model.predictor_depth=4", "model.predictor_heads=4", "loss.distance=l1", "loss.rollout=2",
                     "data.window=8"],
}
# world models trained on long episodes: their data folder, episodes, collection seed, length and collection options
LONG = {"conv-metric": ("data-long", 1200, 0, 97, []), "conv-metric-4k": ("data-long4k", 4000, 1, 97, []),
        "conv-scene": ("data-long4k", 4000, 1, 97, []), "conv-map": ("data-long4k", 4000, 1, 97, []),
        **dict.fromkeys(("conv-map-spread", "conv-spread", "conv-spread-step", "conv-spread-step-s2"),
                        ("data-wall385", 1000, 4, 385, ["--wall-share", "0.3"]))}
METRIC = ("conv-metric", "conv-metric-4k", "conv-scene", "conv-map", "conv-map-spread", "conv-spread", "conv-spread-step",
          "conv-spread-step-s2")
AFTER = {"conv-spread-step-s2": "conv-spread-step"}  # a row that starts from another's run (model.init)
ENERGY_CHECK = {"conv", *METRIC}  # their energy also planned on the true dynamics
PLAN_ARGS = {w: ["--energy", "metric"] for w in METRIC}  # not the default
STEPS = {"conv": 3000, "conv-metric": 1000, "conv-metric-4k": 3000, "conv-scene": 3000, "conv-map": 2000,
         "conv-map-spread": 3000, "conv-spread": 3000, "conv-spread-step": 3000, "conv-spread-step-s2": 3000,
         "pixels": 1000, "vit-random": 3000, "vit-vjepa": 3000, "vit-vjepa-ac": 600}
FROZEN_LIMIT = 1000  # episodes whose frames a frozen ViT encodes (the cache of features), to bound the encoding time


def run(cmd: list[str], log: Path) -> float:
    print("$", " ".join(cmd), flush=True)
    t = time.perf_counter()
    with open(log, "w") as f:
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if r.returncode:
        print(log.read_text()[-3000:])
        raise SystemExit(f"failed ({r.returncode}): {' '.join(cmd)}")
    return time.perf_counter() - t


def stage_data(a, name: str = "data", episodes: int | None = None, length: int = 33, seed: int = 0,
               extra: list[str] | None = None) -> Path:
    data = ROOT / name
    episodes = episodes or a.data_episodes
    if not (data / "index.json").exists() or json.loads((data / "index.json").read_text())["meta"]["episodes"] != episodes:
        run(VJ + ["world", "collect", "--out", str(data), "--episodes", str(episodes), "--length", str(length),
                  "--layout", "random", "--seed", str(seed), "--no-progress", *(extra or [])],
            ROOT / f"collect-{name}.log")
    return data


def stage_pretrain(a, data: Path) -> Path:
    pre = ROOT / "vjepa-env"
    ck = sorted((pre / "checkpoints").glob("step_*.pt")) if (pre / "checkpoints").is_dir() else []
    if (pre / "summary.json").exists() and ck:
        return ck[-1]
    videos = ROOT / "videos"
    if not videos.is_dir():
        run(VJ + ["world", "export-videos", "--data", str(data), "--out", str(videos), "--limit", "1500",
                  "--no-progress"], ROOT / "export.log")
    run(VJ + ["pretrain", "--config", "cpu_demo", "--out", str(pre), "--no-progress", "--max-steps", str(a.pretrain_steps),
              "data.source=files", f"data.datasets=[{videos}]", "data.frame_step=2", "data.horizontal_flip=false",
              "data.random_resize_scale=[1.0,1.0]", "data.random_resize_aspect_ratio=[1.0,1.0]",
              "optim.warmup_steps=20"], ROOT / "pretrain.log")
    return sorted((pre / "checkpoints").glob("step_*.pt"))[-1]


def stage_world(a, name: str, data: Path, vjepa: Path) -> Path:
    out = ROOT / f"world-{name}"
    if (out / "summary.json").exists():
        return out
    ov = [o.format(vjepa=vjepa, root=ROOT) for o in WORLDS[name]]
    if "model.encoder=vit" in ov or "model.encoder=pixels" in ov:
        ov.append(f"data.limit={FROZEN_LIMIT}")
    steps = max(1, int(STEPS[name] * a.scale))
    run(VJ + ["world", "train", "--data", str(data), "--out", str(out), "--steps", str(steps), "--no-progress", *ov],
        ROOT / f"world-{name}.log")
    return out


def stage_plan(a, tag: str, args: list[str]) -> dict:
    out = ROOT / "plans" / tag
    res = out / "results.json"
    if not res.exists():
        out.mkdir(parents=True, exist_ok=True)
        n = a.world_episodes if "--world" in args else a.episodes
        run(VJ + ["plan", "--episodes", str(n), "--out", str(out), "--no-progress", *args], out / "plan.log")
    return json.loads(res.read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--episodes", type=int, default=50, help="evaluation episodes of the baselines")
    ap.add_argument("--world-episodes", type=int, default=50, help="evaluation episodes of the world models")
    ap.add_argument("--plan-worlds", nargs="+", default=None, help="world models to plan with (default: --worlds)")
    ap.add_argument("--data-episodes", type=int, default=3000)
    ap.add_argument("--pretrain-steps", type=int, default=150)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every world-model step budget")
    ap.add_argument("--worlds", nargs="+", default=list(WORLDS), choices=list(WORLDS))
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--train-only", action="store_true", help="stop after training the world models")
    a = ap.parse_args()
    ROOT.mkdir(parents=True, exist_ok=True)
    if not a.report_only:
        data = stage_data(a)
        vjepa = stage_pretrain(a, data) if any("vjepa" in w for w in a.worlds) else None
        for w in a.worlds:
            for x in ([AFTER[w]] if w in AFTER else []) + [w]:
                name, n, seed, length, extra = LONG.get(x, (None, 0, 0, 0, []))
                stage_world(a, x, stage_data(a, name, n, length, seed, extra) if name else data, vjepa)
        if a.train_only:
            return 0
        for layout in ("random", "fixed"):
            for agent in ("oracle", "oracle-euclid", "random", "zero"):
                stage_plan(a, f"{agent}-{layout}", ["--agent", agent, "--layout", layout, "--gif", "0"])
            for w in a.plan_worlds or a.worlds:
                stage_plan(a, f"{w}-{layout}", ["--world", str(ROOT / f"world-{w}"), "--layout", layout,
                                                *PLAN_ARGS.get(w, [])])
        for agent in ("oracle-euclid", "random"):  # the same-room diagnostic: greedy descent suffices there
            stage_plan(a, f"{agent}-same", ["--agent", agent, "--layout", "random", "--task", "same", "--gif", "0"])
        for w in a.plan_worlds or a.worlds:
            stage_plan(a, f"{w}-same", ["--world", str(ROOT / f"world-{w}"), "--layout", "random", "--task", "same",
                                        "--gif", "0", *PLAN_ARGS.get(w, [])])
        for w in [x for x in (a.plan_worlds or a.worlds) if x in ENERGY_CHECK]:  # the energy on the true dynamics
            for task in ("opposite", "same"):
                stage_plan(a, f"{w}-{task}-energy", ["--world", str(ROOT / f"world-{w}"), "--agent", "world-energy",
                                                     "--layout", "random", "--task", task, "--gif", "0",
                                                     *PLAN_ARGS.get(w, [])])
        best = best_world(a.plan_worlds or a.worlds)
        if best:
            for tag, extra in (("mppi", ["--method", "mppi"]), ("last", ["--reduce", "last"])):
                stage_plan(a, f"{best}-random-{tag}", ["--world", str(ROOT / f"world-{best}"), "--layout", "random",
                                                      "--gif", "0", *PLAN_ARGS.get(best, []), *extra])
    print(report(a))
    return 0


def best_world(worlds) -> str | None:
    scores = {}
    for w in worlds:
        p = ROOT / "plans" / f"{w}-random" / "results.json"
        if p.exists():
            r = json.loads(p.read_text())
            scores[w] = (r["success"], -r["final_distance"])
    return max(scores, key=scores.get) if scores else None


def _row(tag: str) -> dict | None:
    p = ROOT / "plans" / tag / "results.json"
    return json.loads(p.read_text()) if p.exists() else None


def _fmt(r: dict | None) -> str:
    if r is None:
        return "- | - | -"
    lo, hi = r["success_ci95"]
    return f"{100 * r['success']:.0f}% ({100 * lo:.0f}-{100 * hi:.0f}) | {r['final_distance']:.1f} | {r['seconds_per_episode']:.2f}"


def report(a) -> str:
    lines = ["| agent | training (min) | random layouts: success (95% CI) | final dist. (px) | s / episode "
             "| fixed layout: success (95% CI) | final dist. (px) | s / episode | same room (random layouts): success | final dist. (px) | s / episode |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    names = {"oracle": "oracle, geodesic cost (true dynamics)", "oracle-euclid": "oracle, straight-line cost (true dynamics)",
             "random": "random policy (the data's)", "zero": "zero action"}
    for agent, label in names.items():
        lines.append(f"| {label} | - | {_fmt(_row(agent + '-random'))} | {_fmt(_row(agent + '-fixed'))} "
                     f"| {_fmt(_row(agent + '-same'))} |")
    for w in a.worlds:
        s = ROOT / f"world-{w}" / "summary.json"
        mins = "-"
        if s.exists():
            d = json.loads(s.read_text())
            mins = f"{(d['seconds'] + d.get('encode_seconds', 0.0)) / 60:.1f}"
        lines.append(f"| world model: {w} | {mins} | {_fmt(_row(w + '-random'))} | {_fmt(_row(w + '-fixed'))} "
                     f"| {_fmt(_row(w + '-same'))} |")
    lines += ["", "Energy shape (first 5 random-layout episodes, every free position): Spearman rank correlation between "
              "each world model's planning energy and the true distance to the goal around the wall (1 = every place "
              "ordered correctly, 0 = flat away from the goal), and the share of positions from which steepest descent "
              "of the energy ends at the goal, in the other room and in the goal's room (1 for the true distance; "
              "a minimum against the wall lowers the first):", "",
              "| world model | energy | Spearman | descent reaches the goal: other room | goal's room |",
              "|---|---|---:|---:|---:|"]
    for w in a.worlds:
        r = _row(w + "-random")
        if r is not None and r.get("energy_geodesic_spearman") is not None:
            desc = (f"{100 * r['energy_descent_opposite']:.0f}% | {100 * r['energy_descent_same']:.0f}%"
                    if r.get("energy_descent_opposite") is not None else "- | -")
            lines.append(f"| {w} | {r['planner']['energy']} | {r['energy_geodesic_spearman']:.2f} | {desc} |")
    lines += ["", "Is the energy right? The same planner on the true dynamics with the world model's energy (its encoder "
              "and distance read at every position), random layouts:", "",
              "| world model | energy | opposite rooms: success (95% CI) | final dist. (px) | s / episode "
              "| same room: success (95% CI) | final dist. (px) | s / episode |", "|---|---|---|---|---|---|---|---|"]
    for w in a.worlds:
        r = _row(w + "-opposite-energy")
        if r is not None:
            lines.append(f"| {w} | {r['planner']['energy']} | {_fmt(r)} | {_fmt(_row(w + '-same-energy'))} |")
    best = best_world(a.worlds)
    if best:
        lines += ["", f"Planner variants for the best world model ({best}), random layouts:", "",
                  "| planner | success (95% CI) | final dist. (px) | s / episode |", "|---|---|---|---|"]
        for tag, label in (("", "CEM, summed energy, warm start (default)"), ("-mppi", "MPPI"),
                           ("-last", "CEM, last-step energy")):
            lines.append(f"| {label} | {_fmt(_row(best + '-random' + tag))} |")
    out = "\n".join(lines)
    results = {t.parent.name: json.loads(t.read_text()) for t in sorted((ROOT / "plans").glob("*/results.json"))} \
        if (ROOT / "plans").is_dir() else {}
    (ROOT / "results.json").write_text(json.dumps(results, indent=1))
    return out


if __name__ == "__main__":
    sys.exit(main())
