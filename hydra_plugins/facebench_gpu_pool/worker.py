"""One job of the GPU pool, in its own process:
``python -m hydra_plugins.facebench_gpu_pool.worker BATCH POSITION RESULT``.

BATCH is the launcher's pickled batch (see ``launcher.GpuPoolLauncher.launch``), POSITION the
job's place in it, RESULT where the job's pickled JobReturn goes. The job runs exactly as in
Hydra's own launchers: ``run_job`` on the config the sweep composes for it, with the sweep's
ConfigStore and resolvers restored first. The job's directory also gets ``gpu_pool.json``:
the CUDA_VISIBLE_DEVICES the job saw, its host and process, and when it started and ended
(Unix times), so one can tell afterwards which GPU ran which job.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import cloudpickle
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import run_job, setup_globals
from omegaconf import open_dict

PLACEMENT_FILE = "gpu_pool.json"


def run(batch_file: Path, position: int, result_file: Path, started: float) -> None:
    """Run job ``position`` of the batch and write its JobReturn (Hydra's ``run_job`` turns an
    exception of the task into a failed one) to ``result_file``."""
    batch = cloudpickle.loads(batch_file.read_bytes())
    setup_globals()
    Singleton.set_state(batch["singleton_state"])
    idx = batch["initial_job_idx"] + position
    config = batch["hydra_context"].config_loader.load_sweep_config(batch["config"], list(batch["job_overrides"][position]))
    with open_dict(config):
        config.hydra.job.id = f"{config.hydra.job.name}_{idx}"
        config.hydra.job.num = idx
    HydraConfig.instance().set_config(config)
    ret = run_job(
        hydra_context=batch["hydra_context"],
        task_function=batch["task_function"],
        config=config,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
    placement = {
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": started,
        "ended": time.time(),
    }
    job_dir = Path(str(ret.hydra_cfg.hydra.runtime.output_dir))
    (job_dir / PLACEMENT_FILE).write_text(json.dumps(placement, indent=2) + "\n")
    result_file.write_bytes(cloudpickle.dumps(ret))


if __name__ == "__main__":
    # started before the batch is unpickled, which imports the job's modules (seconds for torch)
    run(Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), started=time.time())
