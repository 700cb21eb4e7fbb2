"""``videojepa world collect|train|imagine`` and ``videojepa plan``: a latent world model an agent plans with."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import add_run_args

__all__ = ["add_parsers"]

EPILOG = """examples:
  videojepa world collect --out runs/world/data --episodes 3000 --layout random
  videojepa world train --data runs/world/data --out runs/world/conv
  videojepa world train --data runs/world/data --out runs/world/vjepa model.encoder=vit \\
      model.vit_init=runs/cpu_demo/checkpoints/step_00000400.pt
  videojepa world train --data path/to/lerobot_dataset --out runs/world/robot model.img_size=64
  videojepa world imagine --world runs/world/conv --episode 3
  videojepa plan --world runs/world/conv --episodes 50 --layout random

A trajectory folder is an index.json plus .npz shards of frames (uint8), actions and states
(videojepa.data.trajectories documents the format; write_trajectories() writes your own logs). A local
LeRobot dataset folder (meta/info.json, parquet tables, mp4 per camera) is read directly: pip install
"videojepa[lerobot]"."""


def _env_cfg(layout: str | None, meta: dict | None):
    from ..envs.two_rooms import TwoRoomsConfig

    d = dict((meta or {}).get("env_config") or {})
    cfg = TwoRoomsConfig.from_dict(d) if d else TwoRoomsConfig()
    return cfg.with_layout(layout) if layout else cfg


def _load_world(path: str, device: str = "cpu"):
    """``(model, cfg, meta)``, or None after printing why the world model cannot be read."""
    from ..training.world import load_world

    try:
        return load_world(path, device)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return None


def add_parsers(sub) -> None:
    w = sub.add_parser("world", help="world models: collect trajectories, train, imagine",
                       description="Latent world models (V-JEPA 2-AC style): trajectories from the embedded Two Rooms "
                                   "simulator or your own logs, an action-conditioned predictor, counterfactual rollouts.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ws = w.add_subparsers(dest="world_command", metavar="<world command>")

    c = ws.add_parser("collect", help="exploratory trajectories from the Two Rooms simulator",
                      description="Write episodes of the random exploration policy (with a share steered through the "
                                  "door) as a trajectory folder; a stopped collection resumes.")
    c.add_argument("--out", required=True, help="trajectory folder to write")
    c.add_argument("--episodes", type=int, default=3000)
    c.add_argument("--length", type=int, default=33, help="frames per episode (default 33)")
    c.add_argument("--layout", choices=("fixed", "random"), default="random",
                   help="one wall/door layout, or one drawn per episode (default)")
    c.add_argument("--door-share", type=float, default=0.35, help="share of episodes steered through the door")
    c.add_argument("--wall-share", type=float, default=0.0,
                   help="share of episodes steered at the wall away from the door, pushing into it at one point after "
                        "another (default 0: the free walk is stopped by that wall in about 1.6%% of its moves)")
    c.add_argument("--push-steps", type=int, default=6, help="moves into the wall at each point (with --wall-share)")
    c.add_argument("--shard-size", type=int, default=250)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--no-progress", action="store_true")
    c.set_defaults(func=_run_collect)

    x = ws.add_parser("export-videos", help="write a trajectory folder's episodes as mp4 files (to pretrain on them)",
                      description="One mp4 per episode, for V-JEPA pretraining on the environment's own videos: "
                                  "videojepa pretrain data.source=files data.datasets=[OUT]")
    x.add_argument("--data", required=True, help="trajectory folder or LeRobot folder")
    x.add_argument("--out", required=True)
    x.add_argument("--limit", type=int, default=None, help="only the first N episodes")
    x.add_argument("--fps", type=int, default=10)
    x.add_argument("--no-progress", action="store_true")
    x.set_defaults(func=_run_export)

    t = ws.add_parser("train", help="train a world model (resumable)",
                      description="Train an action-conditioned predictor (and a small encoder with anti-collapse terms, "
                                  "or on a frozen encoder: pooled pixels, a V-JEPA-pretrained or random ViT).",
                      epilog="config keys (key=value): data.window, data.batch_size, model.encoder "
                             "(conv|conv_map|pixels|vit), model.predictor (mlp|conv|ac), model.vit_init, loss.rollout, "
                             "loss.distance (l1|mse), loss.std/cov/time/idm, optim.lr, train.steps ...; --print-config "
                             "shows them all.")
    t.add_argument("--data", default=None, help="trajectory folder or LeRobot dataset folder (data.path)")
    t.add_argument("--out", default=None, help="run directory (default runs/world/<encoder>)")
    t.add_argument("--config", default=None, help="YAML file with any of the sections data/model/loss/optim/train")
    t.add_argument("--steps", type=int, default=None, help="override train.steps")
    add_run_args(t, "train.device")
    t.add_argument("overrides", nargs="*", metavar="key=value")
    t.set_defaults(func=_run_train)

    i = ws.add_parser("imagine", help="counterfactual rollouts: where would each action sequence lead?",
                      description="From one evaluation start, roll out several action sequences in the world model "
                                  "(positions read by its state probe) and in the simulator, drawn on the frame.")
    i.add_argument("--world", required=True, help="world-model run folder or checkpoint")
    i.add_argument("--episode", type=int, default=0, help="evaluation episode whose start is used")
    i.add_argument("--layout", choices=("fixed", "random"), default=None, help="default: the training data's")
    i.add_argument("--steps", type=int, default=12, help="actions per sequence")
    i.add_argument("--speed", type=float, default=1.5, help="step length of the straight-line sequences (px)")
    i.add_argument("--out", default=None, help="PNG to write (default <world run>/imagine_<episode>.png)")
    i.add_argument("--decoder", default=None, help="a frame decoder of this world model (videojepa decoder train "
                   "--world RUN): also write the imagined rollout towards the goal decoded to frames, beside the real "
                   "frames (imagine_<episode>_decoded.gif / .png), with the PSNR per step")
    i.set_defaults(func=_run_imagine)

    p = sub.add_parser("plan", help="plan to goals with a trained world model; success rate",
                       description="Goal-reaching in Two Rooms by CEM or MPPI through a world model (or an oracle / "
                                   "random baseline): success rate with a 95%% interval, final distance, timing, a GIF "
                                   "of episodes and an energy-landscape PNG.",
                       epilog="example:\n  videojepa plan --world runs/world/conv --episodes 50 --method mppi",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", default=None, help="world-model run folder or checkpoint (needed by --agent world)")
    p.add_argument("--agent", choices=("world", "world-energy", "oracle", "oracle-euclid", "random", "zero"),
                   default="world", help="world: plan through the world model; world-energy: the true dynamics with "
                                         "the world model's energy (is the energy right?); oracle: the true dynamics "
                                         "with the geodesic (or straight-line) cost; random; zero")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--layout", choices=("fixed", "random"), default=None, help="default: the training data's")
    p.add_argument("--budget", type=int, default=None, help="steps per episode (default 100)")
    p.add_argument("--task", choices=("opposite", "same"), default="opposite",
                   help="start and goal in opposite rooms (default: the door must be found) or in the same room "
                        "(a diagnostic that greedy descent solves)")
    p.add_argument("--method", choices=("cem", "mppi"), default="cem")
    p.add_argument("--energy", choices=("l2", "l1", "metric"), default="l2",
                   help="l2 / l1: distance of the imagined latents to the goal's; metric: distance in the world "
                        "model's temporal-distance head (trained with model.metric_dim>0 loss.metric>0)")
    p.add_argument("--reduce", choices=("sum", "last"), default="sum", help="energy summed over the horizon or last step")
    p.add_argument("--horizon", type=int, default=24, help="actions per plan (default 24)")
    p.add_argument("--samples", type=int, default=100, help="candidate sequences per iteration (default 100)")
    p.add_argument("--elites", type=int, default=10, help="best candidates refitted (default 10)")
    p.add_argument("--iterations", type=int, default=4, help="CEM / MPPI iterations per replan (default 4)")
    p.add_argument("--replan-every", type=int, default=4)
    p.add_argument("--repeat", type=int, default=1,
                   help="hold each sampled action for this many steps (horizon / repeat free actions: a smaller "
                        "search space for long horizons; default 1)")
    p.add_argument("--no-warm-start", action="store_true")
    p.add_argument("--seed", type=int, default=0, help="planner sampling seed (episodes are fixed: seeds 0..N-1)")
    p.add_argument("--out", default=None, help="folder for results.json, episodes.gif, energy.png "
                                               "(default <world run>/plan or runs/plan/<agent>)")
    p.add_argument("--gif", type=int, default=4, help="episodes in the GIF (0: none)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_plan)


def _run_collect(a) -> int:
    from ..envs.collect import PolicyConfig, collect
    from ..envs.two_rooms import TwoRoomsConfig

    if a.episodes < 1 or a.length < 2:
        print("error: --episodes must be >= 1 and --length >= 2", file=sys.stderr)
        return 2
    try:
        policy = PolicyConfig(door_share=a.door_share, wall_share=a.wall_share, push_steps=a.push_steps)
        s = collect(a.out, a.episodes, a.length, TwoRoomsConfig(layout=a.layout), seed=a.seed, shard_size=a.shard_size,
                    policy=policy, progress=not a.no_progress)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"done: {s['episodes']} episodes in {s['shards']} shards under {s['out']} ({s['written_episodes']} written now; "
          f"{s['crossing_share']:.0%} cross the door, {s['blocked_share']:.1%} of moves blocked, "
          f"{s['wall_blocked_share']:.1%} by the wall between the rooms)")
    return 0


def _run_export(a) -> int:
    from ..data.errors import DataError
    from ..data.trajectories import export_videos, load_trajectories

    try:
        ds = load_trajectories(a.data, limit=a.limit)
        paths = export_videos(ds, a.out, fps=a.fps, progress=not a.no_progress)
    except (DataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {len(paths)} videos to {a.out}; pretrain on them with: videojepa pretrain "
          f"data.source=files 'data.datasets=[{a.out}]'")
    return 0


def _run_train(a) -> int:
    import yaml

    from ..config import ConfigError
    from ..training.world import WorldTrainer, load_world_config

    ov = list(a.overrides)
    if a.data:
        ov.append(f"data.path={a.data}")
    if a.steps is not None:
        ov.append(f"train.steps={a.steps}")
    try:
        cfg = load_world_config(a.config, ov)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    out = Path(a.out) if a.out else Path("runs") / "world" / cfg.model.encoder
    try:  # data, config, checkpoint and non-finite-loss errors all name their cause
        tr = WorldTrainer(cfg, out, resume=a.resume, progress=not a.no_progress, device=a.device)
        if tr.resumed_from:
            print(f"resuming from {tr.resumed_from} (step {tr.step})", file=sys.stderr)
        s = tr.fit()
    except (ValueError, FileNotFoundError, RuntimeError) as e:  # DataError, NonFiniteLossError are RuntimeErrors
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"done: {s['steps']} steps in {s['seconds']:.0f} s; loss {s['loss_first']:.4f} -> {s['loss_last']:.4f}; "
          f"held-out probe error {s.get('probe_err_px', float('nan')):.2f} px on frames, "
          f"{s.get('rollout_err_px', float('nan')):.2f} px after a {cfg.loss.rollout}-step rollout")
    print(f"run directory: {out}  (config.yaml, metrics.csv, metrics.png, summary.json, checkpoints/)")
    return 0


def _run_imagine(a) -> int:
    import numpy as np

    from ..envs.two_rooms import eval_episodes
    from ..planning.visualize import DIRECTIONS, imagine, plot_imagination
    loaded = _load_world(a.world)
    if loaded is None:
        return 1
    model, cfg, meta = loaded
    env = _env_cfg(a.layout, meta.get("data_meta"))
    ep = eval_episodes(a.episode + 1, env)
    start, lay = ep.start[a.episode], ep.layout[a.episode]
    seqs = {k: np.tile(np.array(v) * a.speed, (a.steps, 1)) for k, v in DIRECTIONS.items()}
    to_goal = ep.goal[a.episode] - start
    seqs["towards the goal"] = np.tile(to_goal / max(np.linalg.norm(to_goal), 1e-9) * a.speed, (a.steps, 1))
    rolled = imagine(model, start, lay, env, seqs, state_scale=meta.get("state_scale") or 64.0)
    out = Path(a.out) if a.out else Path(meta["path"]).parent.parent / f"imagine_{a.episode}.png"
    plot_imagination(start, lay, env, rolled, out, title=f"what if? episode {a.episode} ({cfg.model.encoder} encoder)")
    for name, r in rolled.items():
        err = np.linalg.norm(r["imagined"][-1] - r["true"][-1])
        print(f"{name:>18}: imagined end ({r['imagined'][-1][0]:.1f}, {r['imagined'][-1][1]:.1f}), "
              f"true end ({r['true'][-1][0]:.1f}, {r['true'][-1][1]:.1f}), off by {err:.1f} px")
    print(f"wrote {out}")
    if a.decoder:
        from ..planning.visualize import decoded_rollout, write_decoded_rollout
        from ..training.decoder import load_decoder

        try:
            dec, dmeta = load_decoder(a.decoder)
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if dmeta["decoder"].get("kind") != "frame":
            print(f"error: {a.decoder} decodes video tokens, not world-model latents; train one with "
                  f"`videojepa decoder train --world {a.world}`", file=sys.stderr)
            return 2
        if Path(dmeta.get("world", "")).resolve() != Path(meta["path"]).resolve():
            print(f"note: {a.decoder} was trained on {dmeta.get('world')}, this world model is {meta['path']}",
                  file=sys.stderr)
        r = decoded_rollout(model, dec, start, lay, env, seqs["towards the goal"])
        stem = out.with_name(out.stem + "_decoded")
        paths = write_decoded_rollout(r, stem)
        pi, pr = r["psnr_imagined"], r["psnr_reconstructed"]
        print(f"decoded rollout towards the goal: PSNR vs the real frames, decoded latent {pr.mean():.1f} dB; "
              f"imagined at step 1 {pi[1]:.1f} dB, step {len(pi) - 1} {pi[-1]:.1f} dB")
        print(f"wrote {paths['gif']} and {paths['png']}")
    return 0


def _run_plan(a) -> int:
    from dataclasses import replace

    import torch

    from ..envs.two_rooms import eval_episodes
    from ..planning.agent import LearnedEnergyAgent, OracleAgent, RandomAgent, WorldModelAgent, ZeroAgent, run_episodes
    from ..planning.planners import PlannerConfig

    try:
        pcfg = PlannerConfig(method=a.method, horizon=a.horizon, samples=a.samples, elites=a.elites,
                             iterations=a.iterations, energy=a.energy, reduce=a.reduce, replan_every=a.replan_every,
                             warm_start=not a.no_warm_start, repeat=a.repeat)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    meta, model = {}, None
    if a.agent in ("world", "world-energy"):
        if not a.world:
            print(f"error: --agent {a.agent} needs --world (a world-model run folder or checkpoint)", file=sys.stderr)
            return 2
        loaded = _load_world(a.world, a.device)
        if loaded is None:
            return 1
        model, _, meta = loaded
    env = _env_cfg(a.layout, meta.get("data_meta"))
    if a.budget:
        env = replace(env, budget=a.budget)
    pcfg = replace(pcfg, max_norm=env.max_step)
    eps = eval_episodes(a.episodes, env, task=a.task)
    if a.agent.startswith("world"):
        try:
            agent = WorldModelAgent(model, pcfg, a.device, state_scale=meta.get("state_scale") or float(env.size)) \
                if a.agent == "world" else LearnedEnergyAgent(model, pcfg, env, a.device)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    elif a.agent.startswith("oracle"):
        agent = OracleAgent(pcfg, env, "euclid" if a.agent == "oracle-euclid" else "geodesic")
    elif a.agent == "random":
        agent = RandomAgent(env, a.seed)
    else:
        agent = ZeroAgent()
    with torch.no_grad():
        res = run_episodes(agent, eps, env, pcfg, seed=a.seed, progress=not a.no_progress, record=a.gif > 0)
    if a.out:
        out = Path(a.out)
    elif meta:  # beside the world-model run: plan/ (through it) or plan-energy/ (its energy on the true dynamics)
        out = Path(meta["path"]).parent.parent / ("plan" if a.agent == "world" else "plan-energy")
    else:
        out = Path("runs/plan") / a.agent
    out.mkdir(parents=True, exist_ok=True)
    public = {k: v for k, v in res.items() if k not in ("trajectories", "plans")}
    public.update({"planner": pcfg.to_dict(), "layout": env.layout, "task": a.task, "budget": env.budget,
                   "world": meta.get("path")})
    grids = None
    if model is not None:  # does the energy order places by their true distance to the goal (around the wall)?
        from ..planning.visualize import energy_diagnostics, energy_grids

        with torch.no_grad():  # one encoding of the positions for the diagnostics and the energy maps
            grids = energy_grids(model, eps, env, 5, energy=a.energy, device=a.device)  # energy.png draws 3
            diag = energy_diagnostics(model, eps, env, n=5, grids=grids)
        public["energy_geodesic_spearman"] = diag["spearman"]
        public["energy_descent_opposite"], public["energy_descent_same"] = diag["descent_opposite"], diag["descent_same"]
    (out / "results.json").write_text(json.dumps(public, indent=2))
    lo, hi = res["success_ci95"]
    print(f"{res['agent']}: success {res['success']:.0%} (95% CI {lo:.0%}-{hi:.0%}) over {res['episodes']} episodes "
          f"({env.layout} layout, {a.task} rooms, {env.budget} steps); mean final distance {res['final_distance']:.1f} px; "
          f"ever reached {res['ever_reached']:.0%}; {res['seconds_per_episode']:.2f} s per episode, "
          f"{res['seconds_per_replan']:.2f} s per replan (all {res['episodes']} episodes batched)")
    if "energy_geodesic_spearman" in public:
        print(f"energy vs true distance to the goal: Spearman {public['energy_geodesic_spearman']:.2f}; steepest "
              f"descent of the energy ends at the goal from {public['energy_descent_opposite']:.0%} of the positions in "
              f"the other room, {public['energy_descent_same']:.0%} in the goal's room (first {min(5, a.episodes)} "
              "episodes, every free position)")
    if a.gif > 0:
        from ..planning.visualize import episodes_gif, energy_landscape

        episodes_gif(res, eps, env, out / "episodes.gif", n=min(a.gif, a.episodes))
        if model is not None:
            energy_landscape(model, eps, env, out / "energy.png", n=3, energy=a.energy, grids=grids)
    print(f"wrote {out}/results.json" + (" , episodes.gif" if a.gif > 0 else "") + (" , energy.png" if a.gif > 0 and model is not None else ""))
    return 0
