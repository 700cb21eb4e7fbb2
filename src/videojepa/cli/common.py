"""Arguments every training command shares (pretrain, finetune, world train, decoder train)."""
from __future__ import annotations


def add_run_args(p, device_default: str = "auto") -> None:
    """``--resume``, ``--device``, ``--no-progress`` and ``--print-config`` on parser (or group) ``p``: the run
    controls of the shared training engine, spelt and explained the same way by every training command."""
    p.add_argument("--resume", default="auto", help="'auto' (the newest verified checkpoint in --out, if any), "
                                                    "'none', or a checkpoint path")
    p.add_argument("--device", default=None, help=f"cpu, cuda, cuda:1 ... (default: {device_default})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
